using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ParameterServer.Server.Store;

/// <summary>
/// Open-addressing hash map from <see cref="ulong"/> key to a fixed-length row of floats.
/// Occupancy bits, keys and rows live in one flat native allocation, so a key costs 8 + 4 * rowLength bytes
/// plus one occupancy bit, scaled by the load-factor slack: the table fills to 0.85 and then
/// grows by a fifth (doubling only while small), so its load stays within 0.71-0.85 and a key
/// costs 1.18-1.41x its raw bytes (a doubling table at 3/4 would cost 1.33-2.67x). Linear
/// probing over any capacity (the home slot is the hash scaled to the capacity, not masked),
/// backward-shift deletion (no tombstones). Every <see cref="ulong"/> is a valid key, because
/// occupancy is a separate bitmap rather than a reserved key value. The memory is native, freed
/// the moment a grow has copied it: managed arrays left the old copies to the garbage collector,
/// which kept about as much again resident (`pserver bench memory`: 28-52 bytes per key of 12-20).
/// </summary>
/// <remarks>
/// Not thread-safe: callers serialise access (the server holds a per-block lock). Spans
/// returned by lookups are views into the backing memory and are only valid until the next
/// insert (which may grow) or remove (which may shift rows), and never after <see cref="Dispose"/>,
/// which owners call under the same lock when they drop the store (a finalizer frees a store
/// that was not disposed).
/// </remarks>
internal sealed unsafe class SparseRowStore : IDisposable
{
    private const int MinCapacity = 8;

    /// <summary>Below this many slots a full table doubles (few keys, cheap); above, it grows by a fifth.</summary>
    private const int DoublingBelow = 256;

    private readonly int _rowLength;
    private ulong* _keys;
    private float* _rows;
    private ulong* _occupied; // bit i set <=> slot i holds a key; the start of the one allocation
    private int _capacity;
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

        // The smallest capacity whose load threshold admits initialCapacity keys.
        long capacity = Math.Max(MinCapacity, (long)initialCapacity * 20 / 17);
        while (Threshold(capacity) < initialCapacity)
        {
            capacity++;
        }

        Allocate(CheckedCapacity(capacity));
    }

    ~SparseRowStore() => Free();

    /// <summary>Native bytes held by every store of this process.</summary>
    public static long NativeBytes => Interlocked.Read(ref s_nativeBytes);

    private static long s_nativeBytes;

    /// <summary>Frees the memory; the store then holds nothing and refuses inserts.</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    public int RowLength => _rowLength;

    public int Count => _count;

    /// <summary>Number of slots.</summary>
    internal int Capacity => _capacity;

    /// <summary>Bytes held by the key, row and occupancy arrays.</summary>
    public long MemoryBytes => BytesFor(_capacity);

    private long BytesFor(long capacity) => capacity == 0 ? 0 : (capacity * sizeof(ulong)) + (capacity * _rowLength * sizeof(float)) + (OccupancyWords(capacity) * sizeof(ulong));

    private static long OccupancyWords(long capacity) => (capacity + 63) >> 6;

    public Span<float> GetOrAddRow(ulong key) => GetOrAddRow(key, out _);

    /// <summary>Returns the row for <paramref name="key"/>, inserting an all-zero row if absent.</summary>
    public Span<float> GetOrAddRow(ulong key, out bool added)
    {
        ObjectDisposedException.ThrowIf(_capacity == 0, this);
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            if (_keys[slot] == key)
            {
                added = false;
                return RowAt(slot);
            }

            slot = Next(slot);
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
            j = Next(j);
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
        new Span<ulong>(_occupied, (int)OccupancyWords(_capacity)).Clear();
        _count = 0;
        _version++;
    }

    public Enumerator GetEnumerator() => new(this);

    private Span<float> RowAt(int slot) => new(_rows + ((long)slot * _rowLength), _rowLength);

    /// <summary>The low 32 bits of the mixed key scaled to the capacity (the top bits chose the key's block).</summary>
    internal int HomeSlot(ulong key) => (int)(((Mix(key) & 0xFFFF_FFFFUL) * (ulong)_capacity) >> 32);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Next(int slot) => ++slot == _capacity ? 0 : slot;

    /// <summary>Keys a table of <paramref name="capacity"/> slots holds before it grows: 0.85 of them.</summary>
    private static long Threshold(long capacity) => capacity * 17 / 20;

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
        if (_capacity == 0)
        {
            return -1; // disposed
        }

        // Terminates because the load factor is kept below 1, so an empty slot always exists.
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            if (_keys[slot] == key)
            {
                return slot;
            }

            slot = Next(slot);
        }

        return -1;
    }

    private int FindEmptySlot(ulong key)
    {
        int slot = HomeSlot(key);
        while (IsOccupied(slot))
        {
            slot = Next(slot);
        }

        return slot;
    }

    private void Grow()
    {
        ulong* oldKeys = _keys;
        float* oldRows = _rows;
        ulong* oldOccupied = _occupied;
        int oldCapacity = _capacity;

        long grown = oldCapacity < DoublingBelow ? (long)oldCapacity * 2 : oldCapacity + (oldCapacity / 5);
        Allocate(CheckedCapacity(grown));

        long words = OccupancyWords(oldCapacity);
        for (int word = 0; word < words; word++)
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
                new ReadOnlySpan<float>(oldRows + ((long)oldSlot * _rowLength), _rowLength).CopyTo(RowAt(slot));
            }
        }

        FreeArrays(oldOccupied, BytesFor(oldCapacity));
        _version++;
    }

    private int CheckedCapacity(long capacity)
    {
        if (capacity > Array.MaxLength)
        {
            throw new InvalidOperationException($"SparseRowStore cannot grow to {capacity} slots: one block holds at most {Array.MaxLength} keys (use more blocks: TableSpec.BlockBits)");
        }

        return (int)capacity;
    }

    /// <summary>
    /// New arrays of <paramref name="capacity"/> slots in one zeroed allocation: occupancy words, then keys and rows
    /// (zeroed too: the C library maps large requests fresh, and zeroes small ones cheaply).
    /// </summary>
    private void Allocate(int capacity)
    {
        long words = OccupancyWords(capacity);
        byte* memory = (byte*)NativeMemory.AllocZeroed((nuint)BytesFor(capacity));
        _occupied = (ulong*)memory;
        _keys = (ulong*)(memory + (words * sizeof(ulong)));
        _rows = (float*)(memory + ((words + capacity) * sizeof(ulong)));
        _capacity = capacity;
        _growThreshold = (int)Threshold(capacity);
        Interlocked.Add(ref s_nativeBytes, BytesFor(capacity));
    }

    private static void FreeArrays(ulong* occupied, long bytes)
    {
        NativeMemory.Free(occupied); // the start of the one allocation
        Interlocked.Add(ref s_nativeBytes, -bytes);
        NativeHeap.Freed(bytes);
    }

    private void Free()
    {
        if (_capacity == 0)
        {
            return;
        }

        FreeArrays(_occupied, BytesFor(_capacity));
        _keys = null;
        _rows = null;
        _occupied = null;
        _capacity = 0;
        _growThreshold = 0;
        _count = 0;
        _version++;
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

            ulong* occupied = _store._occupied;
            int words = (int)OccupancyWords(_store._capacity);
            while (_word == 0)
            {
                if (++_wordIndex >= words)
                {
                    _wordIndex = words; // stay exhausted on repeated calls
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

/// <summary>
/// Hands freed native memory back to the system. glibc keeps freed chunks inside its heaps, still resident: a grown
/// table's old copy is smaller than any table's next size, so it is rarely reused (measured: 3-5 bytes per key at 10M
/// keys). Once an eighth of the stores' memory (at least <see cref="MinTrimBytes"/>) has been freed, malloc_trim
/// releases the free pages in every heap, off the caller's thread (each trim costs a walk of the heaps: trimming every
/// 32 MiB slowed a 30M-key fill by 12%). Elsewhere (another C library, another system) nothing is done.
/// </summary>
internal static partial class NativeHeap
{
    /// <summary>The fewest freed bytes between two trims.</summary>
    public const long MinTrimBytes = 32L << 20;

    private static readonly bool s_canTrim = OperatingSystem.IsLinux();
    private static long s_freedSinceTrim;
    private static int s_trimming;

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    public static void Freed(long bytes)
    {
        if (!s_canTrim || Interlocked.Add(ref s_freedSinceTrim, bytes) < Math.Max(MinTrimBytes, SparseRowStore.NativeBytes / 8) || Interlocked.Exchange(ref s_trimming, 1) == 1)
        {
            return;
        }
        Interlocked.Exchange(ref s_freedSinceTrim, 0);
        ThreadPool.UnsafeQueueUserWorkItem(static _ =>
        {
            try
            {
                MallocTrim(0);
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
            {
                // not glibc: its allocator's own policy applies
            }
            finally
            {
                Volatile.Write(ref s_trimming, 0);
            }
        }, null);
    }
}
