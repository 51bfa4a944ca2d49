using FsCheck.Fluent;
using FsCheck;
using ParameterServer.Server.Store;

namespace ParameterServer.Tests;

public class SparseRowStoreTests
{
    private static readonly ulong[] s_specialKeys = [0, ulong.MaxValue, 1, 2, ulong.MaxValue - 1, 1UL << 63, 42];

    private enum OpKind
    {
        Upsert,
        Remove,
        Lookup,
        Clear,
        Enumerate,
    }

    private readonly record struct Op(OpKind Kind, ulong Key, float Value);

    [Fact]
    public void Matches_dictionary_model_under_random_operations_property()
    {
        Gen<ulong> keys = Gen.Frequency(
            (3, Gen.Elements(s_specialKeys)),
            (6, Gen.Choose(0, 40).Select(i => (ulong)i)),
            (1, Gen.Choose(int.MinValue, int.MaxValue).Two().Select(t => ((ulong)(uint)t.Item1 << 32) | (uint)t.Item2)));
        Gen<OpKind> kinds = Gen.Frequency(
            (10, Gen.Constant(OpKind.Upsert)),
            (5, Gen.Constant(OpKind.Remove)),
            (4, Gen.Constant(OpKind.Lookup)),
            (1, Gen.Constant(OpKind.Enumerate)),
            (1, Gen.Constant(OpKind.Clear)));
        Gen<Op> ops =
            from kind in kinds
            from key in keys
            from value in Gen.Choose(-100, 100)
            select new Op(kind, key, value / 4f);
        Gen<(int RowLength, int InitialCapacity, Op[] Ops)> cases =
            from rowLength in Gen.Choose(1, 5)
            from initialCapacity in Gen.Choose(0, 20)
            from opList in ops.ArrayOf()
            select (rowLength, initialCapacity, opList);

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(300).WithEndSize(400),
            Prop.ForAll(cases.ToArbitrary(), c => RunAgainstModel(c.RowLength, c.InitialCapacity, c.Ops)));
    }

    [Fact]
    public void Matches_dictionary_model_across_many_resizes()
    {
        var random = new Random(12345);
        var ops = new Op[300_000];
        for (int i = 0; i < ops.Length; i++)
        {
            // Insert-heavy first half (grows through many capacities), remove-heavy second half.
            int roll = random.Next(100);
            OpKind kind = i < ops.Length / 2
                ? roll < 70 ? OpKind.Upsert : roll < 85 ? OpKind.Remove : OpKind.Lookup
                : roll < 30 ? OpKind.Upsert : roll < 80 ? OpKind.Remove : OpKind.Lookup;
            ulong key = random.Next(10) == 0
                ? s_specialKeys[random.Next(s_specialKeys.Length)]
                : (ulong)random.Next(40_000);
            ops[i] = new Op(kind, key, random.Next(-50, 50));
        }

        RunAgainstModel(rowLength: 3, initialCapacity: 0, ops, checkEvery: 25_000);
    }

    [Fact]
    public void Backward_shift_keeps_wrapping_clusters_reachable()
    {
        // Keys whose home slots are the last two and first two slots of the table,
        // so clusters wrap around the end; removal order is shuffled many times.
        var probe = new SparseRowStore(rowLength: 2, initialCapacity: 48);
        int Capacity = probe.Capacity;
        ulong[] candidates = Enumerable.Range(0, 200_000).Select(i => (ulong)i)
            .Where(k => probe.HomeSlot(k) is var home && (home >= Capacity - 2 || home <= 1))
            .Take(40)
            .ToArray();
        Assert.Equal(40, candidates.Length);

        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var store = new SparseRowStore(rowLength: 2, initialCapacity: 48);
            Assert.Equal(Capacity, store.Capacity);
            var model = new Dictionary<ulong, float[]>();
            ulong[] keys = [.. candidates.OrderBy(_ => random.Next()).Take(random.Next(1, 41))];
            foreach (ulong key in keys)
            {
                Span<float> row = store.GetOrAddRow(key);
                row[0] = key;
                row[1] = -(float)key;
                model[key] = [key, -(float)key];
            }

            foreach (ulong key in keys.OrderBy(_ => random.Next()))
            {
                Assert.True(store.Remove(key));
                Assert.False(store.Remove(key));
                model.Remove(key);
                AssertSameContents(model, store);
            }

            Assert.Equal(Capacity, store.Capacity);
        }
    }

    [Fact]
    public void Special_keys_zero_and_max_are_ordinary_keys()
    {
        var store = new SparseRowStore(rowLength: 2);
        Assert.True(store.GetRowOrEmpty(0).IsEmpty);
        Assert.True(store.GetRowOrEmpty(ulong.MaxValue).IsEmpty);

        store.GetOrAddRow(0)[1] = 5;
        store.GetOrAddRow(ulong.MaxValue)[0] = 7;

        Assert.Equal(2, store.Count);
        Assert.Equal([0f, 5f], store.GetRowOrEmpty(0).ToArray());
        Assert.Equal([7f, 0f], store.GetRowOrEmpty(ulong.MaxValue).ToArray());
        Assert.True(store.Remove(0));
        Assert.True(store.GetRowOrEmpty(0).IsEmpty);
        Assert.True(store.ContainsKey(ulong.MaxValue));
    }

    [Fact]
    public void GetOrAddRow_reports_added_and_returns_live_storage()
    {
        var store = new SparseRowStore(rowLength: 3);
        Span<float> row = store.GetOrAddRow(10, out bool added);
        Assert.True(added);
        Assert.Equal([0f, 0f, 0f], row.ToArray());
        row[2] = 1.5f;

        Span<float> again = store.GetOrAddRow(10, out added);
        Assert.False(added);
        Assert.Equal(1.5f, again[2]);
        Assert.Equal(1, store.Count);
    }

    [Fact]
    public void New_rows_are_zero_after_remove_clear_and_backward_shift()
    {
        var store = new SparseRowStore(rowLength: 4, initialCapacity: 0);
        for (ulong k = 0; k < 1000; k++)
        {
            store.GetOrAddRow(k).Fill(k + 1);
        }

        for (ulong k = 0; k < 1000; k += 2)
        {
            Assert.True(store.Remove(k));
        }

        for (ulong k = 0; k < 2000; k += 2)
        {
            Assert.Equal([0f, 0f, 0f, 0f], store.GetOrAddRow(k).ToArray());
        }

        store.Clear();
        Assert.Equal(0, store.Count);
        Assert.True(store.GetRowOrEmpty(1).IsEmpty);
        for (ulong k = 0; k < 1000; k++)
        {
            Assert.Equal([0f, 0f, 0f, 0f], store.GetOrAddRow(k).ToArray());
        }
    }

    [Fact]
    public void Enumeration_yields_exactly_the_live_entries()
    {
        var store = new SparseRowStore(rowLength: 2, initialCapacity: 0);
        var expected = new Dictionary<ulong, float[]>();
        foreach (ulong key in s_specialKeys.Concat(Enumerable.Range(100, 500).Select(i => (ulong)i * 7919)))
        {
            store.GetOrAddRow(key)[0] = key % 1000;
            expected[key] = [key % 1000, 0];
        }

        foreach (ulong key in expected.Keys.Where(k => k % 3 == 0).ToList())
        {
            store.Remove(key);
            expected.Remove(key);
        }

        var seen = new Dictionary<ulong, float[]>();
        foreach (var e in store)
        {
            Assert.True(seen.TryAdd(e.Key, e.Row.ToArray()), $"key {e.Key} enumerated twice");
        }

        Assert.Equal(expected.Count, seen.Count);
        foreach ((ulong key, float[] row) in expected)
        {
            Assert.Equal(row, seen[key]);
        }

        // The CurrentKey / CurrentRow form agrees with Current.
        SparseRowStore.Enumerator enumerator = store.GetEnumerator();
        int n = 0;
        while (enumerator.MoveNext())
        {
            Assert.Equal(expected[enumerator.CurrentKey], enumerator.CurrentRow.ToArray());
            n++;
        }

        Assert.Equal(expected.Count, n);
        Assert.False(enumerator.MoveNext());
    }

    [Fact]
    public void Enumerator_throws_on_structural_change_but_allows_row_updates()
    {
        var store = new SparseRowStore(rowLength: 1);
        for (ulong k = 0; k < 10; k++)
        {
            store.GetOrAddRow(k);
        }

        foreach (var e in store)
        {
            store.GetOrAddRow(e.Key)[0] += 1; // existing key: no structural change
        }

        Assert.All(Enumerable.Range(0, 10), k => Assert.Equal(1f, store.GetRowOrEmpty((ulong)k)[0]));

        Assert.Throws<InvalidOperationException>(() =>
        {
            foreach (var e in store)
            {
                store.Remove(e.Key);
            }
        });
        Assert.Throws<InvalidOperationException>(() =>
        {
            foreach (var e in store)
            {
                store.GetOrAddRow(e.Key + 1000);
            }
        });
    }

    [Fact]
    public void Empty_store_enumerates_nothing()
    {
        var store = new SparseRowStore(rowLength: 1, initialCapacity: 0);
        foreach (var e in store)
        {
            Assert.Fail($"unexpected key {e.Key}");
        }

        Assert.Equal(0, store.Count);
        Assert.False(store.Remove(0));
    }

    [Fact]
    public void Capacity_honours_initial_capacity_and_the_load_stays_between_0_7_and_0_85_once_large()
    {
        var growing = new SparseRowStore(rowLength: 1, initialCapacity: 0);
        for (ulong k = 0; k < 300_000; k++)
        {
            growing.GetOrAddRow(k);
            if (growing.Capacity > 512)
            {
                double load = (double)growing.Count / growing.Capacity;
                Assert.InRange(load, 0.7, 0.85);
            }
        }

        foreach (int initial in new[] { 0, 1, 6, 7, 16, 100, 1000, 12_345 })
        {
            var store = new SparseRowStore(rowLength: 1, initialCapacity: initial);
            int capacity = store.Capacity;
            Assert.True(capacity * 17 / 20 >= initial && capacity <= Math.Max(8, (initial * 20 / 17) + 2), $"capacity {capacity} for {initial}");
            for (ulong k = 0; k < (ulong)initial; k++)
            {
                store.GetOrAddRow(k);
            }

            Assert.Equal(capacity, store.Capacity); // no grow while within initialCapacity
        }
    }

    [Fact]
    public void Constructor_validates_arguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SparseRowStore(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SparseRowStore(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SparseRowStore(1, -1));
        Assert.Equal(5, new SparseRowStore(5).RowLength);
    }

    [Fact]
    public void Memory_per_key_is_compact_for_a_million_keys()
    {
        const int Keys = 1_000_000;
        var store = new SparseRowStore(rowLength: 1, initialCapacity: 0);
        for (ulong k = 0; k < Keys; k++)
        {
            store.GetOrAddRow(k * 0x9E3779B97F4A7C15UL)[0] = 1;
        }

        Assert.Equal(Keys, store.Count);
        double bytesPerKey = (double)store.MemoryBytes / Keys;
        // Payload is 12 bytes/key; a table at 0.71-0.85 load costs at most 1.41x that, plus its occupancy bits.
        Assert.True(bytesPerKey < 17.2, $"{bytesPerKey:F2} bytes per key");
        Assert.Equal((store.Capacity * 12L) + ((store.Capacity + 63) / 64 * 8), store.MemoryBytes);
    }

    private static bool RunAgainstModel(int rowLength, int initialCapacity, Op[] ops, int checkEvery = 1)
    {
        var store = new SparseRowStore(rowLength, initialCapacity);
        var model = new Dictionary<ulong, float[]>();
        for (int i = 0; i < ops.Length; i++)
        {
            Op op = ops[i];
            switch (op.Kind)
            {
                case OpKind.Upsert:
                    {
                        Span<float> row = store.GetOrAddRow(op.Key, out bool added);
                        Assert.Equal(!model.ContainsKey(op.Key), added);
                        float[] expected = model.TryGetValue(op.Key, out float[]? existing) ? existing : (model[op.Key] = new float[rowLength]);
                        Assert.Equal(expected, row.ToArray());
                        for (int j = 0; j < rowLength; j++)
                        {
                            row[j] += op.Value + j;
                            expected[j] += op.Value + j;
                        }

                        break;
                    }

                case OpKind.Remove:
                    Assert.Equal(model.Remove(op.Key), store.Remove(op.Key));
                    break;
                case OpKind.Lookup:
                    {
                        ReadOnlySpan<float> row = store.GetRowOrEmpty(op.Key);
                        if (model.TryGetValue(op.Key, out float[]? expected))
                        {
                            Assert.Equal(expected, row.ToArray());
                        }
                        else
                        {
                            Assert.True(row.IsEmpty);
                        }

                        break;
                    }

                case OpKind.Clear:
                    store.Clear();
                    model.Clear();
                    break;
                case OpKind.Enumerate:
                    AssertSameContents(model, store);
                    break;
                default:
                    throw new InvalidOperationException(op.Kind.ToString());
            }

            Assert.Equal(model.Count, store.Count);
            if (i % checkEvery == 0)
            {
                AssertSameContents(model, store);
            }
        }

        AssertSameContents(model, store);
        return true;
    }

    private static void AssertSameContents(Dictionary<ulong, float[]> model, SparseRowStore store)
    {
        Assert.Equal(model.Count, store.Count);
        int enumerated = 0;
        foreach (var e in store)
        {
            Assert.True(model.TryGetValue(e.Key, out float[]? expected), $"unexpected key {e.Key}");
            Assert.Equal(expected, e.Row.ToArray());
            enumerated++;
        }

        Assert.Equal(model.Count, enumerated);
        foreach ((ulong key, float[] row) in model)
        {
            Assert.Equal(row, store.GetRowOrEmpty(key).ToArray());
        }
    }
}
