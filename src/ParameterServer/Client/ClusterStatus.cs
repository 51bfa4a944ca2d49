using System.Globalization;
using System.Text.Json;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>Operator calls to a running job's scheduler, without joining the job (`pserver status`, `drain`, `rebalance`).</summary>
public static class ClusterAdmin
{
    /// <summary>The scheduler's view of the job: nodes, liveness, key ranges, migrations, tables, traffic.</summary>
    public static async Task<ClusterStatus> StatusAsync(string scheduler, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        return new ClusterStatus(await ControlChannel.FetchStatusAsync(scheduler, timeout, cancellationToken).ConfigureAwait(false));
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
    /// <summary>A worker or server is a straggler when its step (or answer) time is this many times the others' median...</summary>
    internal const double StragglerFactor = 1.5;
    /// <summary>... and at least this many milliseconds longer (on loopback, answers take well under a millisecond).</summary>
    internal const double StragglerMinimumMs = 5;

    private readonly ClusterView _view;
    private readonly string[] _migrations;
    private readonly Dictionary<int, TrafficSnapshot> _traffic;
    private readonly bool _copiesComplete;
    private readonly Dictionary<int, NodeReport> _reports;
    private readonly Dictionary<int, double> _answerMs;
    private readonly HashSet<int> _stragglers;

    internal ClusterStatus(StatusReply reply)
    {
        _view = reply.View;
        _migrations = reply.Migrations;
        _traffic = reply.Traffic;
        _copiesComplete = reply.CopiesComplete;
        var alive = _view.Nodes.Where(n => n.Alive).Select(n => n.Id).ToHashSet();
        _reports = reply.Reports.Where(r => alive.Contains(r.Key)).ToDictionary();
        _answerMs = AnswerTimes(_reports);
        _stragglers = Stragglers(_reports.Where(r => !double.IsNaN(r.Value.StepMs)).ToDictionary(r => r.Key, r => r.Value.StepMs));
        _stragglers.UnionWith(Stragglers(_answerMs.Where(a => alive.Contains(a.Key)).ToDictionary()));
    }

    /// <summary>Each server's mean answer time over every worker's last report, weighted by the answers each counted.</summary>
    private static Dictionary<int, double> AnswerTimes(Dictionary<int, NodeReport> reports) =>
        reports.Values.SelectMany(r => r.Servers).Where(s => s.Answers > 0).GroupBy(s => s.Server)
            .ToDictionary(g => g.Key, g => g.Sum(s => s.AnswerMs * s.Answers) / g.Sum(s => s.Answers));

    /// <summary>The nodes whose time is well past the median of the others' (see <see cref="StragglerFactor"/>).</summary>
    internal static HashSet<int> Stragglers(Dictionary<int, double> times)
    {
        var slow = new HashSet<int>();
        foreach (var (id, ms) in times)
        {
            var others = times.Where(t => t.Key != id).Select(t => t.Value).Order().ToArray();
            if (others.Length == 0)
            {
                continue;
            }
            double median = others.Length % 2 == 1 ? others[others.Length / 2] : (others[others.Length / 2 - 1] + others[others.Length / 2]) / 2;
            if (ms > StragglerFactor * median && ms - median >= StragglerMinimumMs)
            {
                slow.Add(id);
            }
        }
        return slow;
    }

    private static double? Finite(double value) => double.IsFinite(value) ? Math.Round(value, 6) : null;

    /// <summary>A worker's report as JSON (null for nodes without one).</summary>
    private object? Progress(int id) => _reports.TryGetValue(id, out var r)
        ? new { steps = r.Steps, examples = r.Examples, loss = Finite(r.Loss), step_ms = Finite(r.StepMs), phase = r.Phase, fraction = Finite(r.Fraction) }
        : null;

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
                progress = Progress(n.Id),
                answer_ms = _answerMs.TryGetValue(n.Id, out double answer) ? Finite(answer) : null,
                straggler = _stragglers.Contains(n.Id),
                slow_calls = _reports.TryGetValue(n.Id, out var report) ? report.SlowCalls : [],
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
        foreach (var (id, r) in _reports.OrderBy(r => r.Key))
        {
            string loss = double.IsFinite(r.Loss) ? string.Create(CultureInfo.InvariantCulture, $", loss {r.Loss:0.####}") : "";
            string phase = double.IsFinite(r.Fraction) ? string.Create(CultureInfo.InvariantCulture, $", {r.Phase} {r.Fraction:P0}") : "";
            string step = double.IsFinite(r.StepMs) ? string.Create(CultureInfo.InvariantCulture, $"steps take {r.StepMs:0.#} ms, ") : "";
            yield return string.Create(CultureInfo.InvariantCulture, $"  worker {id}: {step}{r.Steps:N0} steps, {r.Examples:N0} examples{loss}{phase}{(_stragglers.Contains(id) ? "; STRAGGLER" : "")}");
            foreach (string call in r.SlowCalls)
            {
                yield return $"  worker {id}: slow call: {call}";
            }
        }
        foreach (var (id, ms) in _answerMs.OrderBy(a => a.Key))
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"  server {id}: answers in {ms:0.###} ms on average{(_stragglers.Contains(id) ? "; STRAGGLER" : "")}");
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
