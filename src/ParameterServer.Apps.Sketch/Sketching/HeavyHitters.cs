using System.Runtime.InteropServices;
using System.Text;

namespace ParameterServer.Apps.Sketch.Sketching;

/// <summary>An item and its estimated count.</summary>
public sealed record HeavyHitter(string Item, long Estimate);

/// <summary>
/// Candidates for the heavy hitters, found while inserting: an item becomes one when its count within a flush window
/// (its estimate in the worker's delta buffer) reaches <see cref="Threshold"/>. The threshold starts at 1 (a small
/// stream names every item) and adapts so that a window names at most <see cref="WindowCandidates"/>: it doubles when a
/// window names more, and halves after a window that named fewer than a quarter of that. Each window's candidates go to the
/// servers as rows of a max table keyed by the item's hash: [count in the window, name as UTF-8 in
/// <see cref="NameWords"/> int64 words]. Two workers naming the same item push the same name, and max keeps it
/// whole. The top k are then ranked by the job's sketch, not by these counts.
/// </summary>
public sealed class HeavyHitters
{
    /// <summary>Name bytes kept per candidate: longer names are cut (the hash still tells items apart).</summary>
    public const int NameWords = 8;

    public const int RowWords = 1 + NameWords;

    /// <summary>Candidates a window names at most (about, since the threshold doubles only once they are named).</summary>
    public const int WindowCandidates = 16_384;

    private readonly Dictionary<ulong, long> _window = new();
    private readonly Dictionary<ulong, string> _names = new();
    private readonly ulong[] _recent = new ulong[4096]; // direct-mapped: a heavy item's repeats skip the dictionary

    /// <summary>The within-window count at which an item becomes a candidate now.</summary>
    public long Threshold { get; private set; } = 1;

    /// <summary>Candidates of the current window.</summary>
    public int Count => _window.Count;

    /// <summary>True when the item was offered in this window already (most likely; a false answer only costs a lookup).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public bool Offered(ulong hash) => _recent[(int)hash & (_recent.Length - 1)] == hash;

    /// <summary>Notes an item whose window estimate reached <paramref name="estimate"/> (callers offer items at or above <see cref="Threshold"/>).</summary>
    public void Offer(ulong hash, long estimate, ReadOnlySpan<byte> name)
    {
        _recent[(int)hash & (_recent.Length - 1)] = hash;
        if (!_window.ContainsKey(hash))
        {
            if (estimate < Threshold)
            {
                return; // the threshold rose since the caller read it
            }
            if (_window.Count >= WindowCandidates)
            {
                Threshold *= 2; // too many for this window: from now on only items twice as frequent
                if (estimate < Threshold)
                {
                    return;
                }
            }
        }
        ref long seen = ref CollectionsMarshal.GetValueRefOrAddDefault(_window, hash, out bool exists);
        seen = Math.Max(seen, estimate);
        if (!exists && !_names.ContainsKey(hash))
        {
            _names[hash] = Encoding.UTF8.GetString(name);
        }
    }

    /// <summary>
    /// Writes the window's candidates, by ascending hash, as table keys and rows of <see cref="RowWords"/>, and starts a
    /// new window. Returns how many.
    /// </summary>
    public int TakeWindow(List<ulong> keys, List<long> rows)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(rows);
        keys.Clear();
        rows.Clear();
        keys.AddRange(_window.Keys);
        keys.Sort();
        Span<long> row = stackalloc long[RowWords];
        foreach (ulong hash in keys)
        {
            row.Clear();
            row[0] = _window[hash];
            EncodeName(_names[hash], row[1..]);
            foreach (long word in row)
            {
                rows.Add(word);
            }
        }
        if (_window.Count < WindowCandidates / 4 && Threshold > 1)
        {
            Threshold /= 2;
        }
        _window.Clear();
        Array.Clear(_recent);
        return keys.Count;
    }

    /// <summary>A name as up to 8 x 8 UTF-8 bytes (zero-padded; cut at a character boundary).</summary>
    public static void EncodeName(string name, Span<long> words)
    {
        ArgumentNullException.ThrowIfNull(name);
        var bytes = MemoryMarshal.AsBytes(words);
        bytes.Clear();
        var encoder = Encoding.UTF8.GetEncoder();
        encoder.Convert(name, bytes, flush: true, out _, out _, out _);
    }

    /// <summary>The name a row carries.</summary>
    public static string DecodeName(ReadOnlySpan<long> words)
    {
        var bytes = MemoryMarshal.AsBytes(words);
        int end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    /// <summary>
    /// The top <paramref name="k"/> of the candidates (<paramref name="keys"/> and their rows) by their estimates in the
    /// job's sketch, largest first; ties by name.
    /// </summary>
    public static List<HeavyHitter> Top(int k, ReadOnlySpan<ulong> keys, ReadOnlySpan<long> rows, SketchShape shape, ReadOnlySpan<long> counters)
    {
        var all = new List<HeavyHitter>(keys.Length);
        for (int i = 0; i < keys.Length; i++)
        {
            all.Add(new HeavyHitter(DecodeName(rows.Slice((i * RowWords) + 1, NameWords)), CountMinSketch.EstimateIn(shape, counters, keys[i])));
        }
        all.Sort((a, b) => a.Estimate != b.Estimate ? b.Estimate.CompareTo(a.Estimate) : string.CompareOrdinal(a.Item, b.Item));
        return all.Count > k ? all.GetRange(0, k) : all;
    }
}
