namespace ParameterServer.Core.Codecs;

/// <summary>
/// The rows of one table that went over one connection in filtered pull answers: on the server, what it last sent the
/// worker (<see cref="Extensions.IPullFilter"/> compares against it); on the worker, the same rows as received (left-out rows are
/// filled from it). Both sides update it in the order the answers go over the connection, so the two stay equal.
/// Bounded: once full, new keys are not remembered (a server then always sends them; a worker that lacks a left-out
/// row asks for a refresh). Not thread safe: callers lock it.
/// </summary>
internal sealed class RowMemory(int width, long capacityBytes)
{
    private readonly Dictionary<ulong, int> _slots = new();
    private const long IndexBytesPerKey = 24;
    private float[] _rows = new float[Math.Clamp(capacityBytes / sizeof(float) / 2, 0, 256 * width)];
    private int _used;

    public int Width { get; } = width;

    public long CapacityBytes { get; } = capacityBytes;

    public int Count => _slots.Count;

    /// <summary>Bytes held: rows plus about 24 bytes of index per key.</summary>
    public long Bytes => ((long)_rows.Length * sizeof(float)) + (_slots.Count * IndexBytesPerKey);

    public bool TryGet(ulong key, out ReadOnlySpan<float> row)
    {
        if (_slots.TryGetValue(key, out int slot))
        {
            row = _rows.AsSpan(slot, Width);
            return true;
        }
        row = default;
        return false;
    }

    /// <summary>Remembers <paramref name="row"/> for <paramref name="key"/>; false when a new key does not fit.</summary>
    public bool Set(ulong key, ReadOnlySpan<float> row)
    {
        if (!_slots.TryGetValue(key, out int slot))
        {
            long indexBytes = (_slots.Count + 1) * IndexBytesPerKey;
            long needed = _used + Width;
            if ((Math.Max(needed, _rows.Length) * sizeof(float)) + indexBytes > CapacityBytes)
            {
                return false;
            }
            if (needed > _rows.Length)
            {
                long grown = Math.Min(Math.Max((long)_rows.Length * 2, needed), Math.Min(Array.MaxLength, (CapacityBytes - indexBytes) / sizeof(float)));
                Array.Resize(ref _rows, (int)grown);
            }
            slot = _used;
            _used += Width;
            _slots[key] = slot;
        }
        row.CopyTo(_rows.AsSpan(slot, Width));
        return true;
    }

    public void Clear()
    {
        _slots.Clear();
        _used = 0;
    }
}
