using System.Buffers;
using ParameterServer.Protocol;

namespace ParameterServer.Core.Codecs;

/// <summary>
/// A worker's belief of which key lists one server holds (key caching, sender side): signatures only, at most
/// <see cref="Capacity"/> of them; the least recently used are forgotten first. A wrong belief costs one
/// <see cref="ErrorCode.KeyCacheMiss"/> answer and a resend with the keys. Thread safe.
/// </summary>
internal sealed class SenderKeyCache(int capacity)
{
    private readonly Dictionary<KeySignature, long> _lastUse = new();
    private long _clock;

    public int Capacity { get; } = capacity;

    public long Evictions { get; private set; }

    /// <summary>True when the server should hold this list (send the signature); otherwise it is noted as sent now (send the keys).</summary>
    public bool TryUse(KeySignature signature)
    {
        lock (_lastUse)
        {
            long now = ++_clock;
            if (_lastUse.TryGetValue(signature, out _))
            {
                _lastUse[signature] = now;
                return true;
            }
            if (_lastUse.Count >= Capacity)
            {
                EvictOldest(_lastUse, Math.Max(1, Capacity / 8), use => use, (_, _) => { });
                Evictions++;
            }
            _lastUse[signature] = now;
            return false;
        }
    }

    /// <summary>A new connection: the server holds nothing from this worker any more.</summary>
    public void Clear()
    {
        lock (_lastUse)
        {
            _lastUse.Clear();
        }
    }

    /// <summary>The server said it does not hold the list: send the keys next time.</summary>
    public void Forget(KeySignature signature)
    {
        lock (_lastUse)
        {
            _lastUse.Remove(signature);
        }
    }

    /// <summary>Removes the <paramref name="count"/> least recently used entries (amortised: called once per count insertions).</summary>
    internal static void EvictOldest<TValue>(Dictionary<KeySignature, TValue> entries, int count, Func<TValue, long> lastUse, Action<KeySignature, TValue> removed)
    {
        var ages = new List<(long Use, KeySignature Signature)>(entries.Count);
        foreach (var (signature, value) in entries)
        {
            ages.Add((lastUse(value), signature));
        }
        ages.Sort((a, b) => a.Use.CompareTo(b.Use));
        for (int i = 0; i < Math.Min(count, ages.Count); i++)
        {
            var signature = ages[i].Signature;
            removed(signature, entries[signature]);
            entries.Remove(signature);
        }
    }
}

/// <summary>
/// A server's key lists from one worker connection (key caching, receiver side), by signature. Bounded by bytes of
/// keys held; the least recently used lists are dropped first, and a request naming a dropped list is answered
/// <see cref="ErrorCode.KeyCacheMiss"/>. Used by the connection's receive thread only; counters are read by others.
/// </summary>
internal sealed class ReceiverKeyCache(long capacityBytes)
{
    internal sealed class Entry(ulong[] keys, int count)
    {
        public ulong[] Keys = keys;
        public int Count = count;
        public long LastUse;
    }

    private readonly Dictionary<KeySignature, Entry> _lists = new();
    private long _clock;
    private long _bytes;
    private long _hits;
    private long _misses;
    private long _evictions;

    public long CapacityBytes { get; } = capacityBytes;

    public long Bytes => Interlocked.Read(ref _bytes);

    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    public long Evictions => Interlocked.Read(ref _evictions);

    public int Lists => _lists.Count;

    public void Store(KeySignature signature, ReadOnlySpan<ulong> keys)
    {
        long size = (long)keys.Length * sizeof(ulong);
        if (size > CapacityBytes)
        {
            return; // larger than the whole cache: the sender's next signature will miss and it sends the keys again
        }
        if (_lists.Remove(signature, out var old))
        {
            Release(old);
        }
        while (_bytes + size > CapacityBytes && _lists.Count > 0)
        {
            SenderKeyCache.EvictOldest(_lists, Math.Max(1, _lists.Count / 8), e => e.LastUse, (_, e) =>
            {
                Release(e);
                Interlocked.Increment(ref _evictions);
            });
        }
        var rented = ArrayPool<ulong>.Shared.Rent(Math.Max(1, keys.Length));
        keys.CopyTo(rented);
        _lists[signature] = new Entry(rented, keys.Length) { LastUse = ++_clock };
        Interlocked.Add(ref _bytes, size);
    }

    /// <summary>The keys stored under <paramref name="signature"/> if there are <paramref name="count"/> of them.</summary>
    public bool TryGet(KeySignature signature, int count, out ReadOnlySpan<ulong> keys)
    {
        if (_lists.TryGetValue(signature, out var entry) && entry.Count == count)
        {
            entry.LastUse = ++_clock;
            Interlocked.Increment(ref _hits);
            keys = entry.Keys.AsSpan(0, count);
            return true;
        }
        Interlocked.Increment(ref _misses);
        keys = default;
        return false;
    }

    private void Release(Entry entry)
    {
        Interlocked.Add(ref _bytes, -(long)entry.Count * sizeof(ulong));
        ArrayPool<ulong>.Shared.Return(entry.Keys);
        entry.Keys = [];
        entry.Count = 0;
    }
}
