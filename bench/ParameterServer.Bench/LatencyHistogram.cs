using System.Numerics;

namespace ParameterServer.Bench;

/// <summary>
/// Latencies in nanoseconds, log-linear buckets (32 per power of two, so a bucket is at most 3% wide). Recording is
/// lock free (many receive threads complete calls); histograms of several workers merge by adding counts.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 5;
    private const int Sub = 1 << SubBits;
    private const int BucketCount = 64 * Sub;
    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    internal static int IndexOf(long ns)
    {
        if (ns < 2 * Sub)
        {
            return (int)Math.Max(ns, 0);
        }
        int shift = 63 - BitOperations.LeadingZeroCount((ulong)ns) - SubBits; // ns >> shift is in [Sub, 2 Sub)
        return Math.Min((shift * Sub) + (int)(ns >> shift), BucketCount - 1);
    }

    /// <summary>The middle of a bucket, in nanoseconds.</summary>
    internal static double MidpointOf(int index)
    {
        if (index < 2 * Sub)
        {
            return index;
        }
        int shift = (index / Sub) - 1;
        long low = (long)((index % Sub) + Sub) << shift;
        return low + ((1L << shift) / 2.0);
    }

    public void Record(long ns) => Interlocked.Increment(ref _counts[IndexOf(ns)]);

    public void Clear() => Array.Clear(_counts);

    /// <summary>Non-empty buckets as [index, count] pairs (what a worker reports).</summary>
    public long[][] ToPairs() => _counts.Select((c, i) => (c, i)).Where(x => x.c > 0).Select(x => new long[] { x.i, x.c }).ToArray();

    public void Add(IEnumerable<(int Index, long Count)> pairs)
    {
        foreach (var (index, count) in pairs)
        {
            _counts[Math.Clamp(index, 0, BucketCount - 1)] += count;
            Count += count;
        }
    }

    /// <summary>The q-quantile (0..1) in microseconds, or 0 when empty. Only valid after <see cref="Add"/> (the merge side).</summary>
    public double QuantileMicros(double q)
    {
        if (Count == 0)
        {
            return 0;
        }
        long rank = Math.Max(1, (long)Math.Ceiling(q * Count));
        long seen = 0;
        for (int i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return MidpointOf(i) / 1000.0;
            }
        }
        return MidpointOf(BucketCount - 1) / 1000.0;
    }
}
