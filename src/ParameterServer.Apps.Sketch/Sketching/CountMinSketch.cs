using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ParameterServer.Apps.Sketch.Sketching;

/// <summary>Where an item's counters sit.</summary>
public enum SketchLayout
{
    /// <summary>The classic layout: depth rows of width counters, each row its own hash (the error bound holds as proven).</summary>
    Rows,

    /// <summary>All of an item's counters in one 64-byte block of 8 (one cache line; depth at most 8): faster, a weaker bound.</summary>
    Blocked,
}

/// <summary>
/// The shape of a CountMin sketch from its error bounds (as Apache DataSketches sizes it): width = ceil(e / epsilon),
/// depth = ceil(ln(1 / delta)). An estimate then exceeds the true count by at most epsilon x N (N: all inserts) with
/// probability at least 1 - delta.
/// <para>The counters form a flat array of <see cref="Keys"/> rows of <see cref="RowCounters"/>: that is how a table
/// holds them (one key per row), so the servers split the sketch by blocks of keys. Rows layout: key = column, its
/// row = the column's depth counters. Blocked layout: key = block, its row = 8 counters.</para>
/// </summary>
public sealed record SketchShape
{
    public const int BlockCounters = 8; // 8 int64 = one 64-byte cache line

    public SketchShape(int width, int depth, SketchLayout layout = SketchLayout.Rows)
    {
        if (width < 1 || depth < 1 || (long)width * depth > 1L << 30)
        {
            throw new ArgumentException($"a sketch needs width and depth >= 1 and at most 2^30 counters, got width {width}, depth {depth}");
        }
        if (layout == SketchLayout.Blocked && depth > BlockCounters)
        {
            throw new ArgumentException($"the blocked layout keeps an item's counters in one block of {BlockCounters}: depth {depth} needs --delta >= {Math.Exp(-BlockCounters):0.0000} or --layout rows");
        }
        Width = width;
        Depth = depth;
        Layout = layout;
        Keys = layout == SketchLayout.Rows ? width : (int)(((long)width * depth + BlockCounters - 1) / BlockCounters);
        RowCounters = layout == SketchLayout.Rows ? depth : BlockCounters;
    }

    public int Width { get; }

    public int Depth { get; }

    public SketchLayout Layout { get; }

    /// <summary>Rows of the flat counter array (table keys).</summary>
    public int Keys { get; }

    /// <summary>Counters per row (the table's row width).</summary>
    public int RowCounters { get; }

    public int Counters => Keys * RowCounters;

    /// <summary>The shape that meets the bounds: epsilon and delta in (0, 1).</summary>
    public static SketchShape FromBounds(double epsilon, double delta, SketchLayout layout = SketchLayout.Rows)
    {
        if (!(epsilon > 0 && epsilon < 1) || !(delta > 0 && delta < 1))
        {
            throw new ArgumentException($"--epsilon and --delta must be in (0, 1), got {epsilon} and {delta}");
        }
        double width = Math.Ceiling(Math.E / epsilon);
        if (width > 1 << 28)
        {
            throw new ArgumentException($"--epsilon {epsilon} needs {width:N0} counters per row: use epsilon >= {Math.E / (1 << 28):0.0e0}");
        }
        return new SketchShape((int)width, (int)Math.Ceiling(Math.Log(1 / delta)), layout);
    }

    /// <summary>The flat indexes of an item's <see cref="Depth"/> counters (distinct within a row or a block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Indexes(ulong hash, Span<int> indexes)
    {
        // Double hashing (Kirsch and Mitzenmacher): the j-th hash is h1 + j h2, mapped to [0, n) by a multiply-shift.
        uint h1 = (uint)hash, h2 = (uint)(hash >> 32) | 1;
        if (Layout == SketchLayout.Rows)
        {
            for (int j = 0; j < indexes.Length; j++)
            {
                uint column = (uint)(((ulong)(h1 + ((uint)j * h2)) * (uint)Width) >> 32);
                indexes[j] = ((int)column * Depth) + j;
            }
            return;
        }
        // Blocked: the block from h1, then one of the C(8, depth) sets of slots from h2.
        int block = (int)(((ulong)h1 * (uint)Keys) >> 32) * BlockCounters;
        uint slots = SlotSet(Depth, h2);
        for (int j = 0; j < indexes.Length; j++)
        {
            int slot = System.Numerics.BitOperations.TrailingZeroCount(slots);
            indexes[j] = block + slot;
            slots &= slots - 1;
        }
    }

    private static readonly byte[][] s_slotSets = Enumerable.Range(0, BlockCounters + 1)
        .Select(d => Enumerable.Range(0, 256).Where(m => System.Numerics.BitOperations.PopCount((uint)m) == d).Select(m => (byte)m).ToArray()).ToArray();

    /// <summary>Every set of <paramref name="depth"/> slots of a block, as bit masks of 8: an item's counters are one of them, by hash.</summary>
    internal static byte[] SlotSets(int depth) => s_slotSets[depth];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint SlotSet(int depth, uint h2)
    {
        var sets = s_slotSets[depth];
        return sets[(int)(((ulong)h2 * (uint)sets.Length) >> 32)];
    }
}

/// <summary>
/// A CountMin sketch in memory: the worker's buffer of counter deltas between flushes, the single-process reference of
/// the benchmark, and the job's sketch once pulled. Single-threaded. Two sketches of one shape merge by adding.
/// </summary>
public sealed class CountMinSketch
{
    private readonly int _depth;
    private readonly uint _width;
    private readonly uint _keys;
    private readonly bool _blocked;
    private readonly long[]? _slotMasks; // blocked: per slot set, 8 lanes of -1 (a counter of the item) or 0
    private readonly uint _slotSetCount;

    public CountMinSketch(SketchShape shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        Shape = shape;
        _depth = shape.Depth;
        _width = (uint)shape.Width;
        _keys = (uint)shape.Keys;
        _blocked = shape.Layout == SketchLayout.Blocked;
        if (_blocked)
        {
            var sets = SketchShape.SlotSets(shape.Depth);
            _slotSetCount = (uint)sets.Length;
            _slotMasks = new long[sets.Length * SketchShape.BlockCounters];
            for (int p = 0; p < sets.Length; p++)
            {
                for (int lane = 0; lane < SketchShape.BlockCounters; lane++)
                {
                    _slotMasks[(p * SketchShape.BlockCounters) + lane] = ((sets[p] >> lane) & 1) != 0 ? -1L : 0;
                }
            }
        }
        Counters = new long[shape.Counters];
    }

    public SketchShape Shape { get; }

    /// <summary>The flat counters (<see cref="SketchShape.Keys"/> rows of <see cref="SketchShape.RowCounters"/>).</summary>
    public long[] Counters { get; }

    /// <summary>Counts an item <paramref name="count"/> times; returns its estimate after the insert.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long Add(ulong hash, long count = 1)
    {
        // The hot path of ingestion: the indexes are computed inline (as SketchShape.Indexes does) and the counters
        // reached by reference. Fields are read into locals once: a store through a ref could alias them.
        ref long counters = ref MemoryMarshal.GetArrayDataReference(Counters);
        uint depth = (uint)_depth, width = _width;
        uint h1 = (uint)hash, h2 = (uint)(hash >> 32) | 1;
        long min = long.MaxValue;
        if (_blocked)
        {
            // One cache line: add the item's slot mask (lanes of -1 or 0, AND the count) to the block's two halves,
            // then the smallest of its lanes. No loop, no branch.
            ref long block = ref Unsafe.Add(ref counters, (int)(((ulong)h1 * _keys) >> 32) * SketchShape.BlockCounters);
            ref long mask = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_slotMasks!), (int)(((ulong)h2 * _slotSetCount) >> 32) * SketchShape.BlockCounters);
            var m0 = Vector256.LoadUnsafe(ref mask);
            var m1 = Vector256.LoadUnsafe(ref mask, 4);
            var c = Vector256.Create(count);
            var b0 = Vector256.LoadUnsafe(ref block) + (m0 & c);
            var b1 = Vector256.LoadUnsafe(ref block, 4) + (m1 & c);
            b0.StoreUnsafe(ref block);
            b1.StoreUnsafe(ref block, 4);
            var none = Vector256.Create(long.MaxValue);
            var lanes = Vector256.Min(Vector256.ConditionalSelect(m0, b0, none), Vector256.ConditionalSelect(m1, b1, none));
            var half = Vector128.Min(lanes.GetLower(), lanes.GetUpper());
            return Math.Min(half.GetElement(0), half.GetElement(1));
        }
        for (uint j = 0; j < depth; j++)
        {
            uint column = (uint)(((ulong)(h1 + (j * h2)) * width) >> 32);
            ref long counter = ref Unsafe.Add(ref counters, (int)((column * depth) + j));
            counter += count;
            min = Math.Min(min, counter);
        }
        return min;
    }

    /// <summary>
    /// Conservative update (Estan and Varghese): raises only the counters that would otherwise fall below the new
    /// estimate. Estimates stay overestimates, and are often far tighter; sketches so built still merge by adding.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    [SkipLocalsInit]
    public long AddConservative(ulong hash, long count = 1)
    {
        Span<int> at = stackalloc int[_depth];
        Shape.Indexes(hash, at);
        var counters = Counters;
        long min = long.MaxValue;
        foreach (int i in at)
        {
            min = Math.Min(min, counters[i]);
        }
        long target = min + count;
        foreach (int i in at)
        {
            if (counters[i] < target)
            {
                counters[i] = target;
            }
        }
        return target;
    }

    /// <summary>The estimate of an item: never below its true count.</summary>
    public long Estimate(ulong hash) => EstimateIn(Shape, Counters, hash);

    /// <summary>The estimate of an item in counters of <paramref name="shape"/> (a pulled copy of the job's sketch).</summary>
    public static long EstimateIn(SketchShape shape, ReadOnlySpan<long> counters, ulong hash)
    {
        ArgumentNullException.ThrowIfNull(shape);
        Span<int> at = stackalloc int[shape.Depth];
        shape.Indexes(hash, at);
        long min = long.MaxValue;
        foreach (int i in at)
        {
            min = Math.Min(min, counters[i]);
        }
        return min;
    }

    /// <summary>All inserts counted (N): each adds its count once to every row, so row 0's sum is N (rows layout).</summary>
    public long Total() => TotalOf(Shape, Counters);

    /// <summary>N of counters of <paramref name="shape"/>; for the blocked layout, the sum of all counters over the depth.</summary>
    public static long TotalOf(SketchShape shape, ReadOnlySpan<long> counters)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long sum = 0;
        if (shape.Layout == SketchLayout.Rows)
        {
            for (int i = 0; i < counters.Length; i += shape.Depth)
            {
                sum += counters[i];
            }
            return sum;
        }
        foreach (long c in counters)
        {
            sum += c;
        }
        return sum / shape.Depth;
    }

    /// <summary>Adds another sketch of the same shape (sketches are mergeable).</summary>
    public void Merge(CountMinSketch other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.Shape != Shape)
        {
            throw new ArgumentException($"sketches merge only with the same shape: {Shape} and {other.Shape}");
        }
        System.Numerics.Tensors.TensorPrimitives.Add(Counters, other.Counters, Counters);
    }

    public void Clear() => Array.Clear(Counters);
}
