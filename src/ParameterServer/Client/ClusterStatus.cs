using System.Globalization;
using System.Text.Json;
using ParameterServer.Core.Cluster;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>Operator calls to a running job's scheduler, without joining the job (`pserver status`, `drain`, `rebalance`).</summary>
public static class ClusterAdmin
{
    /// <summary>The scheduler's view of the job: nodes, liveness, key ranges, migrations, tables, traffic.</summary>
    public static async Task<ClusterStatus> StatusAsync(string scheduler, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var (view, migrations, traffic, copiesComplete) = await ControlChannel.FetchStatusAsync(scheduler, timeout, cancellationToken).ConfigureAwait(false);
        return new ClusterStatus(view, migrations, traffic, copiesComplete);
    }

    /// <summary>Asks the scheduler to drain a server or worker; returns its answer (throws <see cref="PsException"/> with a refusal).</summary>
    public static Task<string> DrainAsync(string scheduler, int nodeId, CancellationToken cancellationToken = default) =>
        ControlChannel.DrainAsync(scheduler, nodeId, cancellationToken);

    /// <summary>Asks the scheduler to even out the servers' ring shares (only say what would move when <paramref name="dryRun"/>); returns its answer.</summary>
    public static Task<string> RebalanceAsync(string scheduler, bool dryRun, CancellationToken cancellationToken = default) =>
        ControlChannel.RebalanceAsync(scheduler, dryRun, cancellationToken);
}

/// <summary>A running job as its scheduler sees it, printable as one JSON object or as lines of text.</summary>
public sealed class ClusterStatus
{
    private readonly ClusterView _view;
    private readonly string[] _migrations;
    private readonly Dictionary<int, TrafficSnapshot> _traffic;
    private readonly bool _copiesComplete;

    internal ClusterStatus(ClusterView view, string[] migrations, Dictionary<int, TrafficSnapshot> traffic, bool copiesComplete)
    {
        _view = view;
        _migrations = migrations;
        _traffic = traffic;
        _copiesComplete = copiesComplete;
    }

    /// <summary>The whole status as one JSON object (what `pserver status --json` prints).</summary>
    public string ToJson()
    {
        var view = _view;
        var migrations = _migrations;
        var traffic = _traffic;
        var ranges = Ranges(view);
        var shares = view.Ring.Shares();
        return JsonSerializer.Serialize(new
        {
            view = view.Number,
            ready = view.Ready,
            nodes = view.Nodes.Select(n => new
            {
                id = n.Id, role = n.Role.ToString().ToLowerInvariant(), rank = n.Rank, address = n.Address, alive = n.Alive, state = State(view, n),
                virtual_nodes = n.Role == NodeRole.Server && n.Alive ? view.PointsOf(n) : 0,
                target_virtual_nodes = n.Role == NodeRole.Server && n.Alive ? view.TargetPointsOf(n) : 0,
                ring_share = shares.GetValueOrDefault(n.Id),
            }),
            replication = new { factor = view.Replication, copies = view.Copies, healthy = view.Copies >= view.Replication && _copiesComplete, restoring = !_copiesComplete },
            migrating = view.InTransition,
            moving_fraction = view.MovedRingFraction(),
            migrations,
            bytes_sent = traffic.Values.Sum(t => t.BytesSent),
            bytes_received = traffic.Values.Sum(t => t.BytesReceived),
            traffic = traffic.OrderBy(t => t.Key).ToDictionary(t => t.Key.ToString(CultureInfo.InvariantCulture), t => t.Value.ToJson()),
            ranges = ranges.Select(r => new { server = r.Server, chain = r.Chain, start = Hex(r.Start), end = Hex(r.End) }),
            tables = view.Tables.Select(t => new { id = t.Id, name = t.Name, width = t.Width, handler = t.Handler, mode = t.Mode.ToString().ToLowerInvariant(), dense_size = t.DenseSize }),
        });
    }

    /// <summary>The status as lines of text (what `pserver status` prints).</summary>
    public IEnumerable<string> ToText()
    {
        var view = _view;
        var migrations = _migrations;
        var traffic = _traffic;
        var ranges = Ranges(view);
        yield return $"view {view.Number} ({(view.Ready ? "running" : $"starting: waiting for {view.ExpectedServers} servers and {view.ExpectedWorkers} workers")})";
        yield return $"{"id",4}  {"role",-9}  {"rank",4}  {"address",-22}  state";
        foreach (var n in view.Nodes)
        {
            yield return $"{n.Id,4}  {n.Role.ToString().ToLowerInvariant(),-9}  {n.Rank,4}  {n.Address,-22}  {State(view, n)}";
        }
        foreach (string line in migrations)
        {
            yield return $"migration {line}";
        }
        yield return $"key space: {ranges.Count} ranges on the consistent-hash ring ({view.VirtualNodes} virtual nodes per server)";
        yield return view.Copies < view.Replication
            ? $"replication: DEGRADED, {view.Copies} copies of every range where {view.Replication} were asked: only {view.Ring.Servers} servers own ranges"
            : !_copiesComplete
                ? $"replication: RESTORING, the copies lost with the last dead server are being copied again (another loss before that ends may lose parameters)"
                : $"replication: {view.Replication} copies of every range (primary + ring successors), healthy";
        foreach (var server in view.Servers)
        {
            double primary = ranges.Where(r => r.Server == server.Id).Sum(r => (double)(r.End - r.Start + 1)) / Math.Pow(2, 64);
            double replica = ranges.Where(r => r.Server != server.Id && r.Chain.Contains(server.Id)).Sum(r => (double)(r.End - r.Start + 1)) / Math.Pow(2, 64);
            string moving = view.PointsOf(server) == view.TargetPointsOf(server) ? "" : $", moving to {view.TargetPointsOf(server)} virtual nodes";
            yield return string.Create(CultureInfo.InvariantCulture,
                $"  server {server.Id}: {view.PointsOf(server)} virtual nodes{moving}; primary for {ranges.Count(r => r.Server == server.Id)} ranges, {primary:P1} of the ring; replica for {replica:P1}");
        }
        foreach (var t in view.Tables)
        {
            yield return $"table {t.Id}: {t.Describe()}";
        }
        foreach (var (id, counts) in traffic.OrderBy(t => t.Key))
        {
            var node = view.Nodes.FirstOrDefault(n => n.Id == id);
            string types = string.Join(", ", counts.Types().OrderByDescending(t => t.BytesOut).Take(4).Where(t => t.BytesOut > 0)
                .Select(t => $"{t.Type} {Megabytes(t.BytesOut)}"));
            yield return $"traffic of {node?.Describe() ?? $"node {id}"}: sent {Megabytes(counts.BytesSent)}, received {Megabytes(counts.BytesReceived)}{(types.Length > 0 ? $" (sent: {types})" : "")}";
        }
    }

    /// <summary>
    /// The ring as inclusive [start, end] ranges of hashed positions, each with its chain (primary first, then the
    /// replicas); adjacent arcs with the same chain are merged.
    /// </summary>
    internal static List<(ulong Start, ulong End, int Server, int[] Chain)> Ranges(ClusterView view)
    {
        var ranges = new List<(ulong Start, ulong End, int Server, int[] Chain)>();
        if (view.Ring.IsEmpty)
        {
            return ranges;
        }
        var arcs = view.Ring.Arcs().ToList();
        // Arcs()[0] wraps around zero: split it into [0, end] and [start + 1, max].
        var (wrapStart, wrapEnd, wrapServer) = arcs[0];
        var linear = new List<(ulong Start, ulong End, int Server)> { (0, wrapEnd, wrapServer) };
        linear.AddRange(arcs.Skip(1).Select(a => (a.StartExclusive + 1, a.EndInclusive, a.Server)));
        if (wrapStart != ulong.MaxValue)
        {
            linear.Add((wrapStart + 1, ulong.MaxValue, wrapServer));
        }
        var chain = new int[Math.Max(1, view.Copies)];
        foreach (var r in linear)
        {
            int[] members = chain[..view.Ring.ChainOf(r.End, chain)];
            if (ranges.Count > 0 && ranges[^1].Chain.SequenceEqual(members) && ranges[^1].End + 1 == r.Start)
            {
                ranges[^1] = (ranges[^1].Start, r.End, r.Server, ranges[^1].Chain);
            }
            else
            {
                ranges.Add((r.Start, r.End, r.Server, members));
            }
        }
        return ranges;
    }

    /// <summary>A node's state in words: alive, joining, draining, left (drained), dead.</summary>
    internal static string State(ClusterView view, NodeInfo n)
    {
        if (!n.Alive)
        {
            return n.Left ? "left (drained)" : "dead";
        }
        if (n.Role == NodeRole.Server && view.PointsOf(n) != view.TargetPointsOf(n))
        {
            return view.PointsOf(n) == 0 ? "joining (copying its ranges)" : view.TargetPointsOf(n) == 0 ? "draining (its ranges move)" : "rebalancing";
        }
        return n.Joined ? "alive (joined)" : "alive";
    }

    private static string Hex(ulong value) => "0x" + value.ToString("x16", CultureInfo.InvariantCulture);

    private static string Megabytes(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.###} MB");
}
