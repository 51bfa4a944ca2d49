using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParameterServer.Client.Dispatch;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Extensions;
using ParameterServer.Protocol;

namespace ParameterServer.Client;

/// <summary>
/// A worker's handle on one table. Keys are sorted ascending without duplicates; each key carries
/// <see cref="Width"/> values. Every call returns its timestamp at once (after waiting, if needed, for
/// the table's <see cref="Consistency"/>); the inputs are copied, the destination of a pull is filled
/// by the time <see cref="Wait"/> returns. <c>after</c> lists timestamps that must complete first.
/// </summary>
public sealed class PsTable
{
    private readonly PsClient _client;

    internal PsTable(PsClient client, TableInfo info, TableTraffic? traffic = null)
    {
        _client = client;
        State = new TableState(info, traffic);
    }

    /// <summary>The data path's state of this table (Dispatch): this handle forwards to it.</summary>
    internal TableState State { get; }

    /// <summary>Runs on every push of this worker to this table before it is sent (see <see cref="IPushFilter"/>); null: send everything.</summary>
    public IPushFilter? PushFilter
    {
        get => State.PushFilter;
        set => State.PushFilter = value;
    }

    internal TableInfo Info => State.Info;

    public string Name => Info.Name;

    public int Width => Info.Width;

    public UpdateMode Mode => Info.Mode;

    /// <summary>Keys of a dense table are [0, DenseSize); 0 for a sparse table.</summary>
    public ulong DenseSize => Info.DenseSize;

    /// <summary>Bounded delay of this worker's calls on this table; may be changed while the job runs. Defaults to bounded:4.</summary>
    public Consistency Consistency
    {
        get => State.Consistency;
        set => _client.SetTau(this, value.Tau);
    }

    /// <summary>Sends values for keys to the servers' update handlers.</summary>
    public long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, ReadOnlySpan<long> after = default) =>
        _client.Submit(Holding(ElementType.Float32), MessageType.Push, keys, values, default, after);

    /// <summary>Fetches the values of keys into <paramref name="destination"/> (keys.Length x Width floats).</summary>
    public long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination, ReadOnlySpan<long> after = default) =>
        _client.Submit(Holding(ElementType.Float32), MessageType.Pull, keys, default, destination, after);

    /// <summary>Pushes, then returns the values after the update, in one round trip.</summary>
    public long PushPull(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after = default) =>
        _client.Submit(Holding(ElementType.Float32), MessageType.PushPull, keys, values, destination, after);

    /// <summary>Sends integer values (count deltas) for keys to an <see cref="ElementType.Int32"/> table, which adds them.</summary>
    public long PushInt32(ReadOnlySpan<ulong> keys, ReadOnlySpan<int> values) =>
        _client.Submit(Holding(ElementType.Int32), MessageType.Push, keys, MemoryMarshal.Cast<int, float>(values), default, default);

    /// <summary>Fetches the integer values of keys of an <see cref="ElementType.Int32"/> table into <paramref name="destination"/>.</summary>
    public long PullInt32(ReadOnlySpan<ulong> keys, Memory<int> destination) =>
        _client.Submit(Holding(ElementType.Int32), MessageType.Pull, keys, default, IntegerViews<int>.AsWords(destination), default);

    /// <summary>Pushes values.Length / Width consecutive keys of an <see cref="ElementType.Int32"/> table from <paramref name="firstKey"/>.</summary>
    public long PushRangeInt32(ulong firstKey, ReadOnlySpan<int> values)
    {
        var keys = RangeKeys(firstKey, values.Length, out var rented);
        try
        {
            return PushInt32(keys, values);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    /// <summary>Pulls destination.Length / Width consecutive keys of an <see cref="ElementType.Int32"/> table from <paramref name="firstKey"/>.</summary>
    public long PullRangeInt32(ulong firstKey, Memory<int> destination)
    {
        var keys = RangeKeys(firstKey, destination.Length, out var rented);
        try
        {
            return PullInt32(keys, destination);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    /// <summary>Sends 64-bit integer values (counts that may pass 2^31) for keys to an <see cref="ElementType.Int64"/> table, which adds them.</summary>
    public long PushInt64(ReadOnlySpan<ulong> keys, ReadOnlySpan<long> values) =>
        _client.Submit(Holding(ElementType.Int64), MessageType.Push, keys, MemoryMarshal.Cast<long, float>(values), default, default);

    /// <summary>Fetches the values of keys of an <see cref="ElementType.Int64"/> table into <paramref name="destination"/>.</summary>
    public long PullInt64(ReadOnlySpan<ulong> keys, Memory<long> destination) =>
        _client.Submit(Holding(ElementType.Int64), MessageType.Pull, keys, default, IntegerViews<long>.AsWords(destination), default);

    /// <summary>Pushes values.Length / Width consecutive keys of an <see cref="ElementType.Int64"/> table from <paramref name="firstKey"/>.</summary>
    public long PushRangeInt64(ulong firstKey, ReadOnlySpan<long> values)
    {
        var keys = RangeKeys(firstKey, values.Length, out var rented);
        try
        {
            return PushInt64(keys, values);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    /// <summary>Pulls destination.Length / Width consecutive keys of an <see cref="ElementType.Int64"/> table from <paramref name="firstKey"/>.</summary>
    public long PullRangeInt64(ulong firstKey, Memory<long> destination)
    {
        var keys = RangeKeys(firstKey, destination.Length, out var rented);
        try
        {
            return PullInt64(keys, destination);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    private PsTable Holding(ElementType type) => Info.Element == type ? this : throw new PsException(PsErrorCode.WrongElementType,
        $"table '{Name}' holds {Info.Element.ToString().ToLowerInvariant()} values: call {Info.Element switch
        {
            ElementType.Int32 => "PushInt32 / PullInt32 (and the Range forms)",
            ElementType.Int64 => "PushInt64 / PullInt64 (and the Range forms)",
            _ => "Push / Pull with float values",
        }}");

    /// <summary>Pushes values.Length / Width consecutive keys starting at <paramref name="firstKey"/>.</summary>
    public long PushRange(ulong firstKey, ReadOnlySpan<float> values, ReadOnlySpan<long> after = default)
    {
        var keys = RangeKeys(firstKey, values.Length, out var rented);
        try
        {
            return Push(keys, values, after);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    /// <summary>Pulls destination.Length / Width consecutive keys starting at <paramref name="firstKey"/>.</summary>
    public long PullRange(ulong firstKey, Memory<float> destination, ReadOnlySpan<long> after = default)
    {
        var keys = RangeKeys(firstKey, destination.Length, out var rented);
        try
        {
            return Pull(keys, destination, after);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(rented);
        }
    }

    private ReadOnlySpan<ulong> RangeKeys(ulong firstKey, int valueCount, out ulong[] rented)
    {
        if (valueCount % Width != 0)
        {
            throw new ArgumentException($"table '{Name}' has width {Width}: {valueCount} values are not whole rows");
        }
        int count = valueCount / Width;
        if (count > 0 && firstKey + (ulong)(count - 1) < firstKey)
        {
            throw new ArgumentOutOfRangeException(nameof(firstKey), firstKey, $"a range of {count} keys from {firstKey} passes 2^64");
        }
        rented = ArrayPool<ulong>.Shared.Rent(Math.Max(count, 1));
        var keys = rented.AsSpan(0, count);
        for (int i = 0; i < count; i++)
        {
            keys[i] = firstKey + (ulong)i;
        }
        return keys;
    }

    public Task PushAsync(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, CancellationToken cancellationToken = default) =>
        _client.WaitAsync(Push(keys, values), cancellationToken);

    public Task PullAsync(ReadOnlySpan<ulong> keys, Memory<float> destination, CancellationToken cancellationToken = default) =>
        _client.WaitAsync(Pull(keys, destination), cancellationToken);

    public Task PushPullAsync(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, CancellationToken cancellationToken = default) =>
        _client.WaitAsync(PushPull(keys, values, destination), cancellationToken);

    /// <summary>Every row the servers hold for this table, sorted by key (for exporting a model). Bulk: it allocates.</summary>
    public Task<(ulong[] Keys, float[] Values)> ReadAllAsync(CancellationToken cancellationToken = default) => _client.ReadAllAsync(this, cancellationToken);

    /// <summary>Blocks until the call with this timestamp is done; throws its error if it failed.</summary>
    public void Wait(long timestamp) => _client.Wait(timestamp);

    public override string ToString() => $"table {Info.Describe()}";
}

/// <summary>
/// Integer arrays seen as memory of 4-byte words, for pulls into integer tables: the data path writes words whatever
/// they hold (an int64 is two). One view per array, kept while the array lives, so pulling into the same buffer again
/// allocates nothing.
/// </summary>
internal static class IntegerViews<T>
    where T : unmanaged
{
    private static readonly ConditionalWeakTable<T[], View> s_views = new();

    private static int WordsPerElement => Unsafe.SizeOf<T>() / sizeof(float);

    public static Memory<float> AsWords(Memory<T> memory)
    {
        if (memory.IsEmpty)
        {
            return Memory<float>.Empty;
        }
        if (!MemoryMarshal.TryGetArray<T>(memory, out var segment) || segment.Array is null)
        {
            throw new ArgumentException($"pull into {typeof(T).Name.ToLowerInvariant()} tables needs memory backed by a {typeof(T).Name}[] array", nameof(memory));
        }
        var view = s_views.GetValue(segment.Array, static array => new View(array));
        return view.Memory.Slice(segment.Offset * WordsPerElement, segment.Count * WordsPerElement);
    }

    private sealed class View(T[] array) : MemoryManager<float>
    {
        public override Span<float> GetSpan() => MemoryMarshal.Cast<T, float>(array.AsSpan());

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            var handle = GCHandle.Alloc(array, GCHandleType.Pinned);
            unsafe
            {
                return new MemoryHandle((float*)handle.AddrOfPinnedObject() + elementIndex, handle);
            }
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
