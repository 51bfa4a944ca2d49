using System.Diagnostics.Metrics;
using ParameterServer.Transport;

namespace ParameterServer.Core.Diagnostics;

/// <summary>
/// One node's part in <see cref="PsMetrics"/>: its traffic meter and the counters its role keeps, read when a
/// collector asks. Registered while the node runs.
/// </summary>
internal sealed class NodeMetrics : IDisposable
{
    /// <summary>The role-specific instruments: name, unit, description, and whether it is a counter (else a gauge).</summary>
    internal static readonly (string Name, string Unit, string Description, bool Counter)[] RoleInstruments =
    [
        ("ps.server.requests", "{request}", "Data requests a server answered", true),
        ("ps.server.replicated", "{message}", "Pushes a server forwarded to its replicas", true),
        ("ps.server.refill.blocks", "{block}", "Blocks copied to or from a server while key ranges moved, by direction", true),
        ("ps.server.table.keys", "{key}", "Keys a server holds, by table", false),
        ("ps.server.table.memory", "By", "Bytes a server holds for a table (values and optimizer state), by table", false),
        ("ps.server.key_cache.lookups", "{lookup}", "Key-cache lookups on a server, by result (hit, miss)", true),
        ("ps.server.pull_filter.rows", "{row}", "Rows a server's pull filter considered, by outcome (sent, left_out)", true),
        ("ps.client.calls.in_flight", "{call}", "Pushes and pulls issued and not yet answered", false),
        ("ps.client.backpressure.wait", "ms", "Milliseconds calls waited for room under the bounded delay or the in-flight window", true),
        ("ps.client.failovers", "{slice}", "Call slices sent again after their server was lost", true),
        ("ps.scheduler.nodes", "{node}", "Nodes the scheduler knows, by role and state (alive, dead, left)", false),
        ("ps.scheduler.view", "{view}", "The number of the scheduler's current view of the job", false),
        ("ps.scheduler.tables", "{table}", "Tables declared in the job", false),
        ("ps.scheduler.events", "{event}", "Job events by kind (join, death, drain, migration, checkpoint, failure, ...)", true),
        ("ps.client.slow_calls", "{call}", "Calls, barriers and waits that waited past the slow-call threshold (each logged once)", true),
        ("ps.app.steps", "{step}", "Steps (batches) the worker's app reported done", true),
        ("ps.app.examples", "{example}", "Examples in the steps the worker's app reported done", true),
    ];

    /// <summary>The app's last reported loss on this node (workers; NaN: none), for the ps.app.loss gauge.</summary>
    public Func<double>? Loss { get; set; }

    private readonly string _role;
    private readonly Func<int> _id;
    private readonly TrafficMeter _traffic;
    private readonly Action<string, Action<long, KeyValuePair<string, object?>[]>> _extra;

    /// <param name="role">scheduler, server or worker.</param>
    /// <param name="id">The node's id (it learns it when it registers; -1 before).</param>
    /// <param name="traffic">The node's traffic meter.</param>
    /// <param name="extra">Reports the node's values of one of <see cref="RoleInstruments"/>, with any tags beyond role and node.</param>
    public NodeMetrics(string role, Func<int> id, TrafficMeter traffic, Action<string, Action<long, KeyValuePair<string, object?>[]>> extra)
    {
        _role = role;
        _id = id;
        _traffic = traffic;
        _extra = extra;
        PsMetrics.Add(this);
    }

    /// <summary>The tags every measurement of this node carries: its role and id.</summary>
    public KeyValuePair<string, object?>[] Tags => [new("role", _role), new("node", _id())];

    public void Traffic(List<Measurement<long>> into, bool bytes)
    {
        var tags = Tags;
        foreach (var (type, messagesOut, bytesOut, messagesIn, bytesIn) in _traffic.Snapshot().Types())
        {
            into.Add(new Measurement<long>(bytes ? bytesOut : messagesOut, [.. tags, new("direction", "sent"), new("type", type)]));
            into.Add(new Measurement<long>(bytes ? bytesIn : messagesIn, [.. tags, new("direction", "received"), new("type", type)]));
        }
    }

    public void PeerTraffic(List<Measurement<long>> into)
    {
        var tags = Tags;
        foreach (var (peer, counts) in _traffic.Snapshot().ByPeer)
        {
            into.Add(new Measurement<long>(counts[Transport.PeerTraffic.BytesOut], [.. tags, new("direction", "sent"), new("peer", peer)]));
            into.Add(new Measurement<long>(counts[Transport.PeerTraffic.BytesIn], [.. tags, new("direction", "received"), new("peer", peer)]));
        }
    }

    public void Extra(string instrument, List<Measurement<long>> into)
    {
        var node = Tags;
        _extra(instrument, (value, tags) => into.Add(new Measurement<long>(value, tags.Length == 0 ? node : [.. node, .. tags])));
    }

    public void Dispose() => PsMetrics.Remove(this);
}
