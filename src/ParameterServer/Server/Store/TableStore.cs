using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server.Sync;

namespace ParameterServer.Server.Store;

/// <summary>Receives the values a <see cref="TableStore.Read{TSink}"/> produces, in key order, while the block lock is held.</summary>
internal interface IRowSink
{
    void Write(ReadOnlySpan<float> values);

    void WriteZeros(int count);
}

/// <summary>
/// The rows of one table held by this server. A row is [values (width) | handler state]. Dense tables keep
/// one flat float[] per block (4 bytes per stored float plus state); sparse tables one open-addressing map
/// per block. Each block has its own lock, so workers updating different blocks never contend.
/// </summary>
internal sealed class TableStore
{
    private readonly Block?[] _blocks;
    private readonly Dictionary<long, Block>? _hugeBlocks; // dense tables with more blocks than an array should hold
    private readonly IRunUpdateHandler? _runHandler;

    public TableStore(TableInfo info, IUpdateHandler handler)
    {
        Info = info;
        Handler = handler;
        Width = info.Words;
        RowStride = info.Words + handler.StateLength(info.Words);
        _runHandler = handler as IRunUpdateHandler;
        if (info.BlockCount <= 1 << 22)
        {
            _blocks = new Block?[info.BlockCount];
        }
        else
        {
            _blocks = [];
            _hugeBlocks = new Dictionary<long, Block>();
        }
        Aggregator = info.Mode == UpdateMode.Sync ? new SyncAggregator(this) : null;
    }

    public TableInfo Info { get; }

    public IUpdateHandler Handler { get; }

    /// <summary>What this table's pull answers leave out (<see cref="TableSpec.PullFilter"/>); null: everything is sent.</summary>
    public IPullFilter? PullFilter { get; init; }

    /// <summary>4-byte words of values per key (<see cref="TableInfo.Words"/>): the row width frames carry.</summary>
    public int Width { get; }

    /// <summary>Floats per stored key: values plus handler state.</summary>
    public int RowStride { get; }

    public SyncAggregator? Aggregator { get; }

    private sealed class Block(long index, TableStore table)
    {
        public readonly Lock Gate = new();
        public readonly long Index = index;
        public readonly ulong FirstKey = table.Info.IsDense ? (ulong)index * (ulong)table.Info.BlockKeys : 0;
        public readonly float[]? Dense = table.Info.IsDense ? new float[BlockLength(table, index) * table.RowStride] : null;
        public readonly SparseRowStore? Sparse = table.Info.IsDense ? null : new SparseRowStore(table.RowStride, initialCapacity: 4);

        private static long BlockLength(TableStore table, long index) =>
            (long)Math.Min((ulong)table.Info.BlockKeys, table.Info.DenseSize - (ulong)index * (ulong)table.Info.BlockKeys);

        public Span<float> Row(ulong key, int stride) =>
            Dense is not null ? Dense.AsSpan((int)(key - FirstKey) * stride, stride) : Sparse!.GetOrAddRow(key);

        public ReadOnlySpan<float> RowOrEmpty(ulong key, int stride) =>
            Dense is not null ? Dense.AsSpan((int)(key - FirstKey) * stride, stride) : Sparse!.GetRowOrEmpty(key);
    }

    private Block GetBlock(long index)
    {
        if (_hugeBlocks is not null)
        {
            lock (_hugeBlocks)
            {
                if (!_hugeBlocks.TryGetValue(index, out var b))
                {
                    _hugeBlocks[index] = b = new Block(index, this);
                }
                return b;
            }
        }
        var block = Volatile.Read(ref _blocks[index]);
        if (block is null)
        {
            var created = new Block(index, this);
            block = Interlocked.CompareExchange(ref _blocks[index], created, null) ?? created;
        }
        return block;
    }

    public void Apply(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values) => Apply(KeyList.Of(keys), values);

    public void Read(ReadOnlySpan<ulong> keys, Span<float> destination) => Read(KeyList.Of(keys), destination);

    /// <summary>Applies pushed rows (validated, sorted keys) through the handler, one block lock at a time.</summary>
    public void Apply(KeyList keys, ReadOnlySpan<float> values)
    {
        int n = keys.Count;
        int width = Width;
        int stride = RowStride;
        int i = 0;
        while (i < n)
        {
            ulong key = keys[i];
            long blockIndex = Info.BlockOf(key);
            var block = GetBlock(blockIndex);
            lock (block.Gate)
            {
                if (block.Dense is not null && _runHandler is not null)
                {
                    // Consecutive keys inside one dense block: one vectorised call for the whole run.
                    ulong blockEnd = block.FirstKey + (ulong)Info.BlockKeys;
                    while (i < n && keys[i] < blockEnd)
                    {
                        int run = 1;
                        while (i + run < n && keys[i + run] == keys[i] + (ulong)run && keys[i + run] < blockEnd)
                        {
                            run++;
                        }
                        int offset = (int)(keys[i] - block.FirstKey) * stride;
                        _runHandler.ApplyRun(block.Dense.AsSpan(offset, run * stride), values.Slice(i * width, run * width), width, run);
                        i += run;
                    }
                }
                else
                {
                    do
                    {
                        Handler.Apply(block.Row(keys[i], stride), values.Slice(i * width, width), width);
                        i++;
                    }
                    while (i < n && Info.BlockOf(keys[i]) == blockIndex);
                }
            }
        }
    }

    /// <summary>Whether <see cref="ApplySlice"/> may be used: the handler updates each value from its pushed value alone.</summary>
    public bool AppliesSlices => Handler is IElementwiseUpdateHandler;

    /// <summary>Applies <paramref name="pushed"/> to values [offset, offset + pushed.Length) of one key's row (see <see cref="AppliesSlices"/>).</summary>
    public void ApplySlice(ulong key, int offset, ReadOnlySpan<float> pushed)
    {
        var block = GetBlock(Info.BlockOf(key));
        lock (block.Gate)
        {
            ((IElementwiseUpdateHandler)Handler).ApplyElements(block.Row(key, RowStride).Slice(offset, pushed.Length), pushed);
        }
    }

    /// <summary>Applies one pushed row (sync mode applies the aggregate of a round key by key).</summary>
    public void ApplyOne(ulong key, ReadOnlySpan<float> pushed)
    {
        var block = GetBlock(Info.BlockOf(key));
        lock (block.Gate)
        {
            Handler.Apply(block.Row(key, RowStride), pushed, Width);
        }
    }

    /// <summary>Copies the values (not the state) of each key into <paramref name="destination"/>; absent sparse keys read as zeros.</summary>
    public void Read(KeyList keys, Span<float> destination)
    {
        var sink = new SpanSink(destination);
        Read(keys, ref sink);
    }

    /// <summary>
    /// Hands the values (not the state) of each key to <paramref name="sink"/> in key order, under each block's lock,
    /// so every block is read as one snapshot. Consecutive keys of a dense block without handler state come as one span.
    /// </summary>
    public void Read<TSink>(KeyList keys, ref TSink sink) where TSink : IRowSink, allows ref struct
    {
        int n = keys.Count;
        int width = Width;
        int stride = RowStride;
        int i = 0;
        while (i < n)
        {
            long blockIndex = Info.BlockOf(keys[i]);
            var block = GetBlock(blockIndex);
            lock (block.Gate)
            {
                if (block.Dense is { } dense)
                {
                    ulong blockEnd = block.FirstKey + (ulong)Info.BlockKeys;
                    do
                    {
                        int offset = (int)(keys[i] - block.FirstKey) * stride;
                        int run = 1;
                        if (stride == width)
                        {
                            while (i + run < n && keys[i + run] == keys[i] + (ulong)run && keys[i + run] < blockEnd)
                            {
                                run++;
                            }
                        }
                        sink.Write(dense.AsSpan(offset, ((run - 1) * stride) + width));
                        i += run;
                    }
                    while (i < n && keys[i] < blockEnd);
                }
                else
                {
                    do
                    {
                        var row = block.Sparse!.GetRowOrEmpty(keys[i]);
                        if (row.IsEmpty)
                        {
                            sink.WriteZeros(width);
                        }
                        else
                        {
                            sink.Write(row[..width]);
                        }
                        i++;
                    }
                    while (i < n && Info.BlockOf(keys[i]) == blockIndex);
                }
            }
        }
    }

    /// <summary>
    /// Copies whole blocks from <paramref name="firstBlock"/> on, in block order, while they fit in
    /// <paramref name="maxRows"/> rows (always at least one non-empty block). Keys come out sorted within a
    /// block. Returns the rows written and the block to continue from (-1 when done).
    /// </summary>
    public (int Rows, long NextBlock) Scan(long firstBlock, int maxRows, List<ulong> keys, List<float> values, Func<long, bool>? include = null)
    {
        int rows = 0;
        long blockCount = _hugeBlocks is not null ? long.MaxValue : _blocks.Length;
        long[] huge = _hugeBlocks is null ? [] : HugeBlockIndexes();
        for (long i = firstBlock; _hugeBlocks is null ? i < blockCount : i < huge.Length; i++)
        {
            var block = _hugeBlocks is null ? Volatile.Read(ref _blocks[i]) : _hugeBlocks[huge[i]];
            if (block is null || (include is not null && !include(block.Index)))
            {
                continue;
            }
            lock (block.Gate)
            {
                int count = block.Dense is not null ? block.Dense.Length / RowStride : block.Sparse!.Count;
                if (rows > 0 && rows + count > maxRows)
                {
                    return (rows, i);
                }
                if (block.Dense is not null)
                {
                    for (int k = 0; k < count; k++)
                    {
                        keys.Add(block.FirstKey + (ulong)k);
                        values.AddRange(block.Dense.AsSpan(k * RowStride, Width));
                    }
                }
                else
                {
                    foreach (ulong key in AppendSortedKeys(block.Sparse!, keys))
                    {
                        values.AddRange(block.Sparse!.GetRowOrEmpty(key)[..Width]);
                    }
                }
                rows += count;
            }
        }
        return (rows, -1);
    }

    /// <summary>Appends a sparse block's keys to <paramref name="keys"/>, sorted; returns the appended part.</summary>
    private static ReadOnlySpan<ulong> AppendSortedKeys(SparseRowStore rows, List<ulong> keys)
    {
        int start = keys.Count;
        foreach (var entry in rows)
        {
            keys.Add(entry.Key);
        }
        var added = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(keys)[start..];
        added.Sort();
        return added;
    }

    /// <summary>The lock of one block (created when absent): writers of the block's rows hold it.</summary>
    public Lock BlockGate(long index) => GetBlock(index).Gate;

    /// <summary>A dense block's stored rows, for vector operations (hold <see cref="BlockGate"/>).</summary>
    public Span<float> DenseBlockValues(long index) => GetBlock(index).Dense!;

    /// <summary>Forgets a block's rows (it moved to other servers); a later write starts it afresh.</summary>
    public void DropBlock(long index)
    {
        Block? dropped;
        if (_hugeBlocks is not null)
        {
            lock (_hugeBlocks)
            {
                _hugeBlocks.Remove(index, out dropped);
            }
        }
        else
        {
            dropped = Interlocked.Exchange(ref _blocks[index], null);
        }
        if (dropped?.Sparse is { } sparse)
        {
            lock (dropped.Gate)
            {
                sparse.Dispose(); // its memory back now, after any request that holds the block's lock
            }
        }
    }

    /// <summary>Indexes of the blocks that hold rows (or storage), ascending.</summary>
    public List<long> StoredBlocks()
    {
        if (_hugeBlocks is not null)
        {
            return HugeBlockIndexes().ToList();
        }
        var indexes = new List<long>();
        for (long i = 0; i < _blocks.Length; i++)
        {
            if (Volatile.Read(ref _blocks[i]) is not null)
            {
                indexes.Add(i);
            }
        }
        return indexes;
    }

    /// <summary>
    /// Copies one block's keys and whole stored rows (values and handler state) under its lock, then runs
    /// <paramref name="whileLocked"/> still under it (a refill sends the copy before any later push can change the block).
    /// </summary>
    public void SnapshotBlock(long index, List<ulong> keys, List<float> rows, Action? whileLocked = null)
    {
        var block = GetBlock(index);
        lock (block.Gate)
        {
            if (block.Dense is not null)
            {
                int count = block.Dense.Length / RowStride;
                for (int k = 0; k < count; k++)
                {
                    keys.Add(block.FirstKey + (ulong)k);
                }
                rows.AddRange(block.Dense);
            }
            else
            {
                foreach (ulong key in AppendSortedKeys(block.Sparse!, keys))
                {
                    rows.AddRange(block.Sparse!.GetRowOrEmpty(key));
                }
            }
            whileLocked?.Invoke();
        }
    }

    /// <summary>Writes whole stored rows into a block (a refill from the primary), clearing the block first when asked.</summary>
    public void WriteBlockRows(long index, KeyList keys, ReadOnlySpan<float> rows, bool clearFirst)
    {
        if (index < 0 || index >= Info.BlockCount)
        {
            throw new ArgumentException($"table '{Info.Name}' has blocks 0 .. {Info.BlockCount - 1}, not {index}");
        }
        var block = GetBlock(index);
        lock (block.Gate)
        {
            if (clearFirst)
            {
                if (block.Dense is not null)
                {
                    Array.Clear(block.Dense);
                }
                else
                {
                    block.Sparse!.Clear();
                }
            }
            for (int i = 0; i < keys.Count; i++)
            {
                if (Info.BlockOf(keys[i]) != index)
                {
                    throw new ArgumentException($"key {keys[i]} is not in block {index} of table '{Info.Name}'");
                }
                rows.Slice(i * RowStride, RowStride).CopyTo(block.Row(keys[i], RowStride));
            }
        }
    }

    private long[] HugeBlockIndexes()
    {
        lock (_hugeBlocks!)
        {
            var indexes = _hugeBlocks.Keys.ToArray();
            Array.Sort(indexes);
            return indexes;
        }
    }

    /// <summary>Copies into a span: the plain pull answer.</summary>
    private ref struct SpanSink(Span<float> destination) : IRowSink
    {
        private readonly Span<float> _destination = destination;
        private int _position;

        public void Write(ReadOnlySpan<float> values)
        {
            values.CopyTo(_destination[_position..]);
            _position += values.Length;
        }

        public void WriteZeros(int count)
        {
            _destination.Slice(_position, count).Clear();
            _position += count;
        }
    }

    /// <summary>Keys stored and bytes held, for stats.</summary>
    public (long Keys, long Bytes) Usage()
    {
        long keys = 0;
        long bytes = 0;
        IEnumerable<Block> blocks = _hugeBlocks is not null ? _hugeBlocks.Values.ToArray() : _blocks.OfType<Block>();
        foreach (var b in blocks)
        {
            lock (b.Gate)
            {
                if (b.Dense is not null)
                {
                    keys += b.Dense.Length / RowStride;
                    bytes += (long)b.Dense.Length * sizeof(float);
                }
                else
                {
                    keys += b.Sparse!.Count;
                    bytes += b.Sparse.MemoryBytes;
                }
            }
        }
        return (keys, bytes);
    }
}
