namespace ParameterServer.Core.Cluster;

/// <summary>
/// Consistent-hash ring: each server owns <c>virtualNodes</c> points at Mix64(serverId, i); a position belongs
/// to the first point clockwise. Adding a server moves only about 1/(n+1) of the positions.
/// </summary>
internal sealed class HashRing
{
    private readonly ulong[] _points;
    private readonly int[] _owners; // server id per point

    public HashRing(IReadOnlyList<int> serverIds, int virtualNodes)
        : this(serverIds.Select(id => (id, virtualNodes)).ToArray(), virtualNodes)
    {
        if (virtualNodes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(virtualNodes), virtualNodes, "need at least one virtual node per server");
        }
    }

    /// <summary>A ring where each server has its own number of virtual nodes (its points 0..count-1): a weight, changed by rebalancing.</summary>
    public HashRing(IReadOnlyList<(int Server, int Points)> servers, int virtualNodes)
    {
        var points = new List<(ulong Point, int Server)>(servers.Sum(s => Math.Max(0, s.Points)));
        foreach (var (id, count) in servers)
        {
            for (int v = 0; v < count; v++)
            {
                points.Add((PointOf(id, v), id));
            }
        }
        Servers = servers.Where(s => s.Points > 0).Select(s => s.Server).Distinct().Count();
        points.Sort((a, b) => a.Point != b.Point ? a.Point.CompareTo(b.Point) : a.Server.CompareTo(b.Server));
        _points = points.Select(p => p.Point).ToArray();
        _owners = points.Select(p => p.Server).ToArray();
        VirtualNodes = virtualNodes;
    }

    public int VirtualNodes { get; }

    /// <summary>Servers with at least one point.</summary>
    public int Servers { get; }

    /// <summary>The share of the ring (of all positions) each server owns.</summary>
    public Dictionary<int, double> Shares()
    {
        var shares = new Dictionary<int, double>();
        foreach (var (start, end, server) in Arcs())
        {
            double length = _points.Length == 1 ? 1.0 : (end - start) / 18446744073709551616.0; // wraps correctly in ulong
            shares[server] = shares.GetValueOrDefault(server) + length;
        }
        return shares;
    }

    public bool IsEmpty => _points.Length == 0;

    public static ulong PointOf(int serverId, int virtualNode) => Hashing.Mix64(((ulong)(uint)serverId << 32) | (uint)virtualNode);

    /// <summary>The server that owns a ring position.</summary>
    public int OwnerOf(ulong position)
    {
        if (_points.Length == 0)
        {
            throw new InvalidOperationException("the ring has no servers");
        }
        int index = Array.BinarySearch(_points, position);
        if (index < 0)
        {
            index = ~index;
        }
        return _owners[index == _points.Length ? 0 : index];
    }

    /// <summary>
    /// The replication chain of a ring position: its owner, then the next distinct servers clockwise, at most
    /// <paramref name="chain"/>.Length of them. When a server leaves, every chain it headed is headed by its successor in
    /// that chain, which already holds the data: that is why replicas are the ring successors. Returns the chain length.
    /// </summary>
    public int ChainOf(ulong position, Span<int> chain)
    {
        if (_points.Length == 0)
        {
            throw new InvalidOperationException("the ring has no servers");
        }
        int index = Array.BinarySearch(_points, position);
        if (index < 0)
        {
            index = ~index;
        }
        int length = 0;
        for (int step = 0; step < _points.Length && length < chain.Length; step++)
        {
            int owner = _owners[(index + step) % _points.Length];
            if (!chain[..length].Contains(owner))
            {
                chain[length++] = owner;
            }
        }
        return length;
    }

    /// <summary>The arcs of the ring as (start exclusive, end inclusive, server), in order; the first arc wraps around zero.</summary>
    public IEnumerable<(ulong StartExclusive, ulong EndInclusive, int Server)> Arcs()
    {
        for (int i = 0; i < _points.Length; i++)
        {
            ulong start = i == 0 ? _points[^1] : _points[i - 1];
            yield return (start, _points[i], _owners[i]);
        }
    }

    /// <summary>The exact fraction of ring positions whose owner differs between two rings.</summary>
    public static double MovedFraction(HashRing from, HashRing to)
    {
        if (from.IsEmpty || to.IsEmpty)
        {
            return from.IsEmpty == to.IsEmpty ? 0 : 1;
        }
        // Between two consecutive points of either ring both owners are constant: the owner of the interval's end.
        var all = from._points.Concat(to._points).Distinct().Order().ToArray();
        double moved = 0;
        for (int i = 0; i < all.Length; i++)
        {
            ulong end = all[i];
            ulong start = i == 0 ? all[^1] : all[i - 1];
            if (from.OwnerOf(end) != to.OwnerOf(end))
            {
                moved += all.Length == 1 ? 1.0 : (end - start) / 18446744073709551616.0;
            }
        }
        return moved;
    }
}
