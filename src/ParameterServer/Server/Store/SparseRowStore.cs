using System.Numerics;
using System.Runtime.CompilerServices;

namespace ParameterServer.Server.Store;

/// <summary>
/// Open-addressing hash map from <see cref="ulong"/> key to a fixed-length row of floats.
/// Keys, rows and occupancy live in three flat arrays, so a key costs 8 + 4 * rowLength bytes
/// plus one occupancy bit, scaled by the load-factor slack (at most 4/3 right after a grow,
/// so between 1x and 2.67x). Linear probing, power-of-two capacity, backward-shift deletion
/// (no tombstones). Every <see cref="ulong"/> is a valid key, because occupancy is a separate
/// bitmap rather than a reserved key value.
/// </summary>
/// <remarks>
/// Not thread-safe: callers serialise access (the server holds a per-block lock). Spans
/// returned by lookups are views into the backing arrays and are only valid until the next
/// insert (which may grow) or remove (which may shift rows).
/// </remarks>
internal sealed class SparseRowStore
{
    private const int MinCapacity = 8;

    private readonly int _rowLength;
    private ulong[] _keys;
    private float[] _rows;
    private ulong[] _occupied; // bit i set <=> slot i holds a key
    private int _mask;
    private int _growThreshold;
    private int _count;
    private int _version; // bumped on structural changes so enumerators can detect them

    /// <param name="rowLength">Floats per row, at least 1.</param>
    /// <param name="initialCapacity">Number of keys that fit before the first grow.</param>
    public SparseRowStore(int rowLength, int initialCapacity = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rowLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(initialCapacity);
        _rowLength = rowLength;

        // Smallest power of two whose 3/4 load threshold admits initialCapacity keys.
        long capacity = MinCapacity;
        while (capacity * 3 / 4 < initialCapacity)
        {
            capacity *= 2;
        }

        Allocate(CheckedCapacity(capacity), out _keys, out _rows, out _occupied);
        SetCapacityFields(_keys.Length);
    }

    public int RowLength => _rowLength;

    public int Count => _count;

    /// <summary>Number of slots (a power of two).</summary>
    internal int Capacity => _keys.Length;

    /// <summary>Bytes held by the key, row and occupancy arrays (excluding object headers).</summary>
    public long MemoryBytes =>
        ((long)_keys.Length * sizeof(ulong)) + ((long)_rows.Length * sizeof(float)) + ((long)_occupied.Length * sizeof(ulong));

    public Span<float> GetOrAddRow(ulong key) => GetOrAddRow(key, out _);

    /// <summary>Returns the row for <paramref name="key"/>, inserting an all-zero row if absent.</summary>
    public Span<float> GetOrAddRow(ulong key, out bool added)
    {
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            if (_keys[slot] == key)
            {
                added = false;
                return RowAt(slot);
            }

            slot = (slot + 1) & _mask;
        }

        if (_count >= _growThreshold)
        {
            Grow();
            slot = FindEmptySlot(key);
        }

        _keys[slot] = key;
        SetOccupied(slot);
        _count++;
        _version++;

        // Rows are zeroed on insert rather than on remove/clear: a removed slot's stale data
        // (or a slot vacated by a backward shift) is simply overwritten here.
        Span<float> row = RowAt(slot);
        row.Clear();
        added = true;
        return row;
    }

    /// <summary>Returns the row for <paramref name="key"/>, or an empty span if absent. Never inserts.</summary>
    public ReadOnlySpan<float> GetRowOrEmpty(ulong key)
    {
        int slot = FindSlot(key);
        return slot < 0 ? ReadOnlySpan<float>.Empty : RowAt(slot);
    }

    public bool ContainsKey(ulong key) => FindSlot(key) >= 0;

    /// <summary>Removes <paramref name="key"/> and its row; returns false if it was absent.</summary>
    public bool Remove(ulong key)
    {
        int hole = FindSlot(key);
        if (hole < 0)
        {
            return false;
        }

        // Backward-shift deletion: walk the cluster after the hole and move back every entry
        // whose home slot is not cyclically in (hole, j]; such an entry was probed past the hole
        // and would become unreachable if the hole stayed empty.
        int j = hole;
        while (true)
        {
            j = (j + 1) & _mask;
            if (!IsOccupied(j))
            {
                break;
            }

            int home = HomeSlot(_keys[j]);
            bool homeInRange = hole <= j
                ? hole < home && home <= j
                : hole < home || home <= j;
            if (homeInRange)
            {
                continue;
            }

            _keys[hole] = _keys[j];
            RowAt(j).CopyTo(RowAt(hole));
            hole = j;
        }

        ClearOccupied(hole);
        _count--;
        _version++;
        return true;
    }

    /// <summary>Removes all keys; keeps the current capacity.</summary>
    public void Clear()
    {
        Array.Clear(_occupied);
        _count = 0;
        _version++;
    }

    public Enumerator GetEnumerator() => new(this);

    private Span<float> RowAt(int slot) => _rows.AsSpan(slot * _rowLength, _rowLength);

    private int HomeSlot(ulong key) => (int)Mix(key) & _mask;

    /// <summary>splitmix64 finalizer: a cheap bijective mixer so sequential keys spread out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Mix(ulong x)
    {
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    private bool IsOccupied(int slot) => ((_occupied[slot >> 6] >> slot) & 1UL) != 0;

    private void SetOccupied(int slot) => _occupied[slot >> 6] |= 1UL << slot;

    private void ClearOccupied(int slot) => _occupied[slot >> 6] &= ~(1UL << slot);

    private int FindSlot(ulong key)
    {
        // Terminates because the load factor is kept below 1, so an empty slot always exists.
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            if (_keys[slot] == key)
            {
                return slot;
            }

            slot = (slot + 1) & _mask;
        }

        return -1;
    }

    private int FindEmptySlot(ulong key)
    {
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            slot = (slot + 1) & _mask;
        }

        return slot;
    }

    private void Grow()
    {
        ulong[] oldKeys = _keys;
        float[] oldRows = _rows;
        ulong[] oldOccupied = _occupied;

        Allocate(CheckedCapacity((long)oldKeys.Length * 2), out _keys, out _rows, out _occupied);
        SetCapacityFields(_keys.Length);

        for (int word = 0; word < oldOccupied.Length; word++)
        {
            ulong bits = oldOccupied[word];
            while (bits != 0)
            {
                int oldSlot = (word << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;

                ulong key = oldKeys[oldSlot];
                int slot = FindEmptySlot(key);
                _keys[slot] = key;
                SetOccupied(slot);
                oldRows.AsSpan(oldSlot * _rowLength, _rowLength).CopyTo(RowAt(slot));
            }
        }

        _version++;
    }

    private int CheckedCapacity(long capacity)
    {
        if (capacity > Array.MaxLength || capacity * _rowLength > Array.MaxLength)
        {
            throw new InvalidOperationException(
                $"SparseRowStore cannot grow to {capacity} slots of {_rowLength} floats: exceeds the maximum array length.");
        }

        return (int)capacity;
    }

    private void Allocate(int capacity, out ulong[] keys, out float[] rows, out ulong[] occupied)
    {
        keys = new ulong[capacity];
        rows = new float[capacity * _rowLength];
        occupied = new ulong[(capacity + 63) >> 6];
    }

    private void SetCapacityFields(int capacity)
    {
        _mask = capacity - 1;
        _growThreshold = capacity / 4 * 3;
    }

    /// <summary>One live entry. The row is a view into the store, valid until it is next modified structurally.</summary>
    public readonly ref struct Entry
    {
        internal Entry(ulong key, ReadOnlySpan<float> row)
        {
            Key = key;
            Row = row;
        }

        public ulong Key { get; }

        public ReadOnlySpan<float> Row { get; }
    }

    /// <summary>
    /// Allocation-free enumerator over live entries in slot order. Inserting or removing keys while
    /// enumerating throws <see cref="InvalidOperationException"/>; updating rows of existing keys is fine.
    /// </summary>
    public struct Enumerator
    {
        private readonly SparseRowStore _store;
        private readonly int _version;
        private int _wordIndex;
        private ulong _word; // occupancy bits of _wordIndex not yet visited
        private int _slot;

        internal Enumerator(SparseRowStore store)
        {
            _store = store;
            _version = store._version;
            _wordIndex = -1;
            _word = 0;
            _slot = -1;
        }

        public readonly Entry Current => new(CurrentKey, CurrentRow);

        public readonly ulong CurrentKey => _store._keys[_slot];

        public readonly ReadOnlySpan<float> CurrentRow => _store.RowAt(_slot);

        public bool MoveNext()
        {
            if (_version != _store._version)
            {
                throw new InvalidOperationException("SparseRowStore was modified during enumeration.");
            }

            ulong[] occupied = _store._occupied;
            while (_word == 0)
            {
                if (++_wordIndex >= occupied.Length)
                {
                    _wordIndex = occupied.Length; // stay exhausted on repeated calls
                    return false;
                }

                _word = occupied[_wordIndex];
            }

            _slot = (_wordIndex << 6) + BitOperations.TrailingZeroCount(_word);
            _word &= _word - 1;
            return true;
        }
    }
}
