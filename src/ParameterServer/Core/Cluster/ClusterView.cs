using System.Collections.Concurrent;
using ParameterServer.Protocol;

namespace ParameterServer.Core.Cluster;

/// <summary>
/// The immutable picture of a job that the scheduler publishes on every change: nodes, tables, ring parameters.
/// Every node caches the latest one; routing is a pure function of it.
/// </summary>
internal sealed class ClusterView
{
    private readonly ConcurrentDictionary<int, TablePlacement> _placements = new();
    private readonly int[] _declaredDead; // ids of nodes that died (not left), sorted

    public ClusterView(uint number, bool ready, int virtualNodes, int expectedServers, int expectedWorkers, IReadOnlyList<NodeInfo> nodes, IReadOnlyList<TableInfo> tables, int replication = 1)
    {
        Replication = Math.Max(1, replication);
        Number = number;
        Ready = ready;
        VirtualNodes = virtualNodes;
        ExpectedServers = expectedServers;
        ExpectedWorkers = expectedWorkers;
        Nodes = nodes;
        Tables = tables;
        Servers = nodes.Where(n => n.Role == NodeRole.Server && n.Alive).OrderBy(n => n.Id).ToArray();
        Workers = nodes.Where(n => n.Role == NodeRole.Worker && n.Alive).OrderBy(n => n.Id).ToArray();
        _declaredDead = nodes.Where(n => !n.Alive && !n.Left).Select(n => n.Id).Order().ToArray();
        Ring = new HashRing(Servers.Select(s => (s.Id, PointsOf(s))).ToArray(), virtualNodes);
        InTransition = Servers.Any(s => PointsOf(s) != TargetPointsOf(s));
        TargetRing = InTransition ? new HashRing(Servers.Select(s => (s.Id, TargetPointsOf(s))).ToArray(), virtualNodes) : Ring;
        Copies = Math.Min(Replication, Ring.Servers);
        // While key ranges migrate a block's chain is its current chain followed by the members of its target chain that
        // are not in it yet: those receive a copy (refill) and every push, so the switch to the target loses nothing.
        ChainLength = InTransition ? Math.Min(Copies + Math.Min(Replication, TargetRing.Servers), Servers.Count) : Copies;
        ulong fingerprint = Hashing.FoldSeed;
        foreach (long part in Servers.SelectMany(server => new long[] { server.Id, PointsOf(server), TargetPointsOf(server) }).Append(virtualNodes).Append(Replication))
        {
            fingerprint = Hashing.Fold(fingerprint, (ulong)part);
        }
        PlacementFingerprint = (long)fingerprint;
    }

    /// <summary>
    /// Equal for two views that place every block on the same servers (a worker joining or dying makes a new view,
    /// not a new placement): what server-side vector operations check, since every server must run them alike.
    /// </summary>
    public long PlacementFingerprint { get; }

    /// <summary>Virtual nodes a server owns on the ring now (-1 in a node record: the job's default).</summary>
    public int PointsOf(NodeInfo server) => server.Points < 0 ? VirtualNodes : server.Points;

    /// <summary>Virtual nodes a server will own once the migration in progress is done.</summary>
    public int TargetPointsOf(NodeInfo server) => server.TargetPoints < 0 ? PointsOf(server) : server.TargetPoints;

    /// <summary>True while key ranges migrate: some server's points differ from its target (a join, a drain, a rebalance).</summary>
    public bool InTransition { get; }

    /// <summary>The ring once the migration in progress is done (<see cref="Ring"/> when none is).</summary>
    public HashRing TargetRing { get; }

    /// <summary>Copies of each block that are complete under this view: <see cref="Replication"/>, or fewer while fewer servers own ranges.</summary>
    public int Copies { get; }

    /// <summary>Fraction of the key space (ring positions) whose primary changes in the migration in progress.</summary>
    public double MovedRingFraction() => InTransition ? HashRing.MovedFraction(Ring, TargetRing) : 0;

    /// <summary>Fraction of a table's blocks whose primary changes in the migration in progress (0 when none is).</summary>
    public double MovedFraction(TableInfo table)
    {
        if (!InTransition || Ring.IsEmpty || TargetRing.IsEmpty)
        {
            return 0;
        }
        long sample = Math.Min(table.BlockCount, 1 << 16);
        long moved = 0;
        for (long i = 0; i < sample; i++)
        {
            long block = sample == table.BlockCount ? i : (long)((ulong)i * (ulong)table.BlockCount / (ulong)sample);
            ulong position = table.RingPositionOf(block);
            moved += Ring.OwnerOf(position) != TargetRing.OwnerOf(position) ? 1 : 0;
        }
        return moved / (double)sample;
    }

    public uint Number { get; }

    /// <summary>True once the expected servers and workers have registered; workers start then.</summary>
    public bool Ready { get; }

    public int VirtualNodes { get; }

    public int ExpectedServers { get; }

    public int ExpectedWorkers { get; }

    /// <summary>Copies of each block the job keeps (primary plus replicas), as configured.</summary>
    public int Replication { get; }

    /// <summary>
    /// The longest chain of a block under this view: <see cref="Copies"/>, and up to twice that while ranges migrate.
    /// Routing arrays and successor buffers are sized by it; a block's own chain may be shorter.
    /// </summary>
    public int ChainLength { get; }

    public IReadOnlyList<NodeInfo> Nodes { get; }

    public IReadOnlyList<TableInfo> Tables { get; }

    /// <summary>Live servers ordered by id; a server's index here is its "slot" in routing arrays.</summary>
    public IReadOnlyList<NodeInfo> Servers { get; }

    public IReadOnlyList<NodeInfo> Workers { get; }

    public HashRing Ring { get; }

    /// <summary>Whether node <paramref name="nodeId"/> died (as opposed to leaving gracefully) by this view: it is fenced off.</summary>
    public bool IsDeclaredDead(int nodeId) => _declaredDead.Length > 0 && Array.BinarySearch(_declaredDead, nodeId) >= 0;

    public TableInfo? FindTable(int id)
    {
        foreach (var t in Tables)
        {
            if (t.Id == id)
            {
                return t;
            }
        }
        return null;
    }

    public TableInfo? FindTable(string name) => Tables.FirstOrDefault(t => t.Name == name);

    public int SlotOfServer(int serverId)
    {
        for (int i = 0; i < Servers.Count; i++)
        {
            if (Servers[i].Id == serverId)
            {
                return i;
            }
        }
        return -1;
    }

    public TablePlacement PlacementOf(TableInfo table) =>
        _placements.TryGetValue(table.Id, out var placement) ? placement : _placements.GetOrAdd(table.Id, static (_, state) => new TablePlacement(state.table, state.view), (table, view: this));

    public void Write(PayloadWriter w)
    {
        w.WriteInt64(Number);
        w.WriteBool(Ready);
        w.WriteInt32(VirtualNodes);
        w.WriteInt32(ExpectedServers);
        w.WriteInt32(ExpectedWorkers);
        w.WriteInt32(Nodes.Count);
        foreach (var n in Nodes)
        {
            w.WriteInt32(n.Id);
            w.WriteByte((byte)n.Role);
            w.WriteInt32(n.Rank);
            w.WriteString(n.Host);
            w.WriteInt32(n.Port);
            w.WriteBool(n.Alive);
            w.WriteInt32(n.Points);
            w.WriteInt32(n.TargetPoints);
            w.WriteBool(n.Joined);
            w.WriteBool(n.Left);
        }
        w.WriteInt32(Tables.Count);
        foreach (var t in Tables)
        {
            w.WriteInt32(t.Id);
            t.WriteDefinition(w);
        }
        w.WriteInt32(Replication);
    }

    public static ClusterView Read(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        return Read(ref r);
    }

    public static ClusterView Read(ref PayloadReader r)
    {
        uint number = (uint)r.ReadInt64();
        bool ready = r.ReadBool();
        int vnodes = r.ReadBounded(1 << 16); // a value, not a count of what follows
        int expectedServers = r.ReadInt32();
        int expectedWorkers = r.ReadInt32();
        int nodeCount = r.ReadCount(1 << 20);
        var nodes = new NodeInfo[nodeCount];
        for (int i = 0; i < nodeCount; i++)
        {
            int id = r.ReadInt32();
            var role = (NodeRole)r.ReadByte();
            int rank = r.ReadInt32();
            string host = r.ReadString(1024);
            int port = r.ReadInt32();
            bool alive = r.ReadBool();
            int points = r.ReadInt32();
            int targetPoints = r.ReadInt32();
            bool joined = r.ReadBool();
            bool left = r.ReadBool();
            nodes[i] = new NodeInfo(id, role, rank, host, port, alive, points, targetPoints, joined, left);
        }
        int tableCount = r.ReadCount(1 << 16);
        var tables = new TableInfo[tableCount];
        for (int i = 0; i < tableCount; i++)
        {
            int id = r.ReadInt32();
            tables[i] = TableInfo.ReadDefinition(ref r, id);
        }
        int replication = r.ReadInt32();
        return new ClusterView(number, ready, Math.Max(vnodes, 1), expectedServers, expectedWorkers, nodes, tables, replication);
    }
}

/// <summary>
/// Where each block of one table lives under one view. Owner lookups are O(1) for tables up to 4M blocks. While ranges
/// migrate, a block's chain is its current chain (primary first) followed by the target chain's new members.
/// </summary>
internal sealed class TablePlacement
{
    private const long MaxCachedBlocks = 1 << 22;
    private readonly int[]? _slotOfBlock;
    private readonly int[]? _chainSlots; // ChainLength slots per block, primary first, -1 after a shorter chain's end
    private readonly Dictionary<int, int> _slotOfServer;
    private readonly HashRing _ring;
    private readonly HashRing _target;
    private readonly int _copies;
    private readonly int _targetCopies;

    public TablePlacement(TableInfo table, ClusterView view)
    {
        Table = table;
        _ring = view.Ring;
        _target = view.TargetRing;
        _copies = Math.Max(1, view.Copies);
        _targetCopies = Math.Max(1, Math.Min(view.Replication, _target.Servers));
        _slotOfServer = new Dictionary<int, int>();
        for (int i = 0; i < view.Servers.Count; i++)
        {
            _slotOfServer[view.Servers[i].Id] = i;
        }
        ServerCount = view.Servers.Count;
        ChainLength = view.ChainLength;
        if (!_ring.IsEmpty && table.BlockCount <= MaxCachedBlocks)
        {
            _slotOfBlock = new int[table.BlockCount];
            if (ChainLength > 1)
            {
                _chainSlots = new int[table.BlockCount * ChainLength];
            }
            Span<int> chain = stackalloc int[Math.Max(ChainLength, 1)];
            for (long b = 0; b < _slotOfBlock.Length; b++)
            {
                if (_chainSlots is null)
                {
                    _slotOfBlock[b] = _slotOfServer[_ring.OwnerOf(table.RingPositionOf(b))];
                    continue;
                }
                int n = ComputeChain(b, chain);
                var cached = _chainSlots.AsSpan((int)(b * ChainLength), ChainLength);
                cached.Fill(-1);
                chain[..n].CopyTo(cached);
                _slotOfBlock[b] = chain[0];
            }
        }
    }

    /// <summary>The longest chain of a block under this view (see <see cref="ClusterView.ChainLength"/>).</summary>
    public int ChainLength { get; }

    /// <summary>Slots of the servers holding a block, primary first; <paramref name="slots"/> needs <see cref="ChainLength"/> room. Returns the count.</summary>
    public int ChainOfBlock(long block, Span<int> slots)
    {
        if (_chainSlots is { } cached)
        {
            var chain = cached.AsSpan((int)(block * ChainLength), ChainLength);
            int n = chain.IndexOf(-1);
            n = n < 0 ? ChainLength : n;
            chain[..n].CopyTo(slots);
            return n;
        }
        if (ChainLength <= 1)
        {
            slots[0] = SlotOfBlock(block);
            return 1;
        }
        return ComputeChain(block, slots);
    }

    private int ComputeChain(long block, Span<int> slots)
    {
        ulong position = Table.RingPositionOf(block);
        Span<int> ids = stackalloc int[Math.Max(_copies, _targetCopies)];
        int n = _ring.ChainOf(position, ids[.._copies]);
        for (int i = 0; i < n; i++)
        {
            slots[i] = _slotOfServer[ids[i]];
        }
        if (ReferenceEquals(_target, _ring) || _target.IsEmpty)
        {
            return n;
        }
        int m = _target.ChainOf(position, ids[.._targetCopies]);
        for (int i = 0; i < m && n < ChainLength; i++)
        {
            int slot = _slotOfServer[ids[i]];
            if (!slots[..n].Contains(slot))
            {
                slots[n++] = slot;
            }
        }
        return n;
    }

    public TableInfo Table { get; }

    public int ServerCount { get; }

    public int SlotOfBlock(long block) => _slotOfBlock is { } cached ? cached[block] : _slotOfServer[_ring.OwnerOf(Table.RingPositionOf(block))];

    /// <summary>Index into <see cref="ClusterView.Servers"/> of the server that owns <paramref name="key"/>.</summary>
    public int SlotOf(ulong key) => SlotOfBlock(Table.BlockOf(key));
}
