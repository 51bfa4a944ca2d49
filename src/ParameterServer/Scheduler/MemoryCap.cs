using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;

namespace ParameterServer.Scheduler;

/// <summary>
/// What dense tables cost each server under --max-memory-mb (values and optimizer state, once per copy it keeps), and
/// the fewest servers a job needs under a cap. Shares follow the real placement (the ring and the tables' blocks), not
/// an even split: consistent hashing leaves some servers 10% or more over the mean.
/// </summary>
internal static class MemoryCap
{
    // Chains looked up for one candidate server count at most (blocks x placements tried): the refusal path runs on the
    // scheduler's loop, so its cost is bounded.
    private const long ChainBudget = 4_000_000;

    /// <summary>Bytes each server would hold of <paramref name="tables"/> (dense ones) on <paramref name="ring"/>, keyed by server id.</summary>
    public static Dictionary<int, long> Held(HashRing ring, int copies, IEnumerable<TableInfo> tables)
    {
        var held = new Dictionary<int, long>();
        Span<int> chain = stackalloc int[Math.Max(1, copies)];
        foreach (var table in tables.Where(t => t.IsDense))
        {
            long rowBytes = RowBytes(table);
            for (long block = 0; block < table.BlockCount; block++)
            {
                long keys = Math.Min(table.BlockKeys, (long)table.DenseSize - (block * table.BlockKeys));
                int length = ring.ChainOf(table.RingPositionOf(block), chain);
                foreach (int server in chain[..length])
                {
                    held[server] = held.GetValueOrDefault(server) + (keys * rowBytes);
                }
            }
        }
        return held;
    }

    /// <summary>Bytes a server keeps per key: the values and, for a built-in optimizer, its state.</summary>
    public static long RowBytes(TableInfo table)
    {
        int state = 0;
        if (table.Element is ElementType.Float32)
        {
            try
            {
                state = UpdateHandlers.Parse(table.Handler).StateLength(table.Width);
            }
            catch (ArgumentException)
            {
                // A registered handler the scheduler cannot build: its state is not counted.
            }
        }
        return (table.Words + state) * 4L;
    }

    /// <summary>
    /// The fewest servers, each capped at <paramref name="cap"/> bytes, that hold <paramref name="tables"/> in every
    /// placement tried. A job's nodes take ids 1, 2, ... as they register, so its n servers hold some n of the ids
    /// 1 .. n + workers: every such choice is tried while there are few, otherwise a fixed sample.
    /// </summary>
    public static int ServersNeeded(IReadOnlyList<TableInfo> tables, long cap, int virtualNodes, Func<int, int> copiesFor, int workers)
    {
        long single = tables.Where(t => t.IsDense).Sum(t => (long)t.DenseSize * RowBytes(t));
        long blocks = Math.Max(1, tables.Where(t => t.IsDense).Sum(t => t.BlockCount));
        int n = 1;
        while ((double)single * copiesFor(n) / n > cap && n < 100_000)
        {
            n++;
        }
        // Past a few times the even split's count, placement is not what is short: the even split's answer stands.
        for (int limit = n * 4; n < limit; n++)
        {
            int copies = copiesFor(n);
            if (Placements(n, workers, (int)Math.Clamp(ChainBudget / blocks, 1, 64))
                .All(ids => Held(new HashRing(ids, virtualNodes), copies, tables).Values.All(bytes => bytes <= cap)))
            {
                return n;
            }
        }
        return n;
    }

    /// <summary>Server id sets a job of n servers and the given workers could have: all, or <paramref name="samples"/> of them.</summary>
    internal static IEnumerable<int[]> Placements(int n, int workers, int samples)
    {
        int pool = n + Math.Max(0, workers);
        if (Choose(pool, n) <= 2 * samples)
        {
            foreach (var ids in Subsets(pool, n))
            {
                yield return ids;
            }
            yield break;
        }
        // Servers registered first, last, and a fixed pseudo-random sample between.
        yield return Enumerable.Range(1, n).ToArray();
        yield return Enumerable.Range(pool - n + 1, n).ToArray();
        var random = new Random(n);
        for (int s = 2; s < samples; s++)
        {
            yield return Enumerable.Range(1, pool).OrderBy(_ => random.Next()).Take(n).Order().ToArray();
        }
    }

    private static IEnumerable<int[]> Subsets(int pool, int n)
    {
        var ids = Enumerable.Range(1, n).ToArray();
        while (true)
        {
            yield return (int[])ids.Clone();
            int i = n - 1;
            while (i >= 0 && ids[i] == pool - n + i + 1)
            {
                i--;
            }
            if (i < 0)
            {
                yield break;
            }
            ids[i]++;
            for (int j = i + 1; j < n; j++)
            {
                ids[j] = ids[j - 1] + 1;
            }
        }
    }

    private static double Choose(int pool, int n)
    {
        double c = 1;
        for (int i = 0; i < n; i++)
        {
            c = c * (pool - i) / (i + 1);
            if (c > 1e9)
            {
                break;
            }
        }
        return c;
    }
}
