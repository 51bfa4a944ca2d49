using System.Text.Json;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Client.JobControl;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>
/// What a worker can learn about itself and its job beyond the data plane: traffic counters, call timing, where a
/// table's blocks live. Reached through <see cref="PsClient.Diagnostics"/>.
/// </summary>
public sealed class ClientDiagnostics
{
    private readonly PsClient _client;

    internal ClientDiagnostics(PsClient client) => _client = client;

    /// <summary>This worker's own counters: frames and bytes to and from the servers and the scheduler.</summary>
    public TrafficReport Traffic() => new(_client.TrafficMeter.Snapshot());

    /// <summary>Sends this worker's counters to the scheduler; a barrier that follows orders them before any <see cref="FetchJobTrafficAsync"/>.</summary>
    public void PublishTraffic() => _client.PublishTraffic();

    /// <summary>
    /// The job's traffic: the workers' counters as last published to the scheduler, added up, and the servers'
    /// counters, asked directly and added up.
    /// </summary>
    public async Task<JobTrafficReport> FetchJobTrafficAsync(CancellationToken cancellationToken = default)
    {
        var nodes = await _client.FetchTrafficAsync(cancellationToken).ConfigureAwait(false);
        var view = _client.View;
        var workerIds = view.Nodes.Where(n => n.Role == NodeRole.Worker).Select(n => n.Id).ToHashSet();
        var workers = TrafficSnapshot.Sum(nodes.Where(n => workerIds.Contains(n.Key)).Select(n => n.Value));
        var servers = new List<TrafficSnapshot>();
        foreach (string json in await _client.GetServerStatsAsync(cancellationToken).ConfigureAwait(false))
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("traffic", out var traffic))
            {
                servers.Add(TrafficSnapshot.FromJson(traffic));
            }
        }
        return new JobTrafficReport(new TrafficReport(workers), new TrafficReport(TrafficSnapshot.Sum(servers)));
    }

    /// <summary>
    /// Tells the job one step (batch) of the app is done, with its examples and, when known, its loss: `pserver
    /// status` and the dashboard show each worker's steps, time per step and loss, and flag workers whose steps take
    /// much longer than the others' (stragglers). Cheap: no allocation, one short lock.
    /// </summary>
    public void ReportStep(int examples, double loss = double.NaN) => _client.Progress.ReportStep(examples, loss);

    /// <summary>Tells the job how far this worker's current phase has come (0..1), for `pserver status` and the dashboard.</summary>
    public void ReportProgress(string phase, double fraction) => _client.Progress.ReportPhase(phase, fraction);

    /// <summary>Slices sent again to a new owner after their server was lost or the views disagreed.</summary>
    public long Failovers => _client.Failovers;

    /// <summary>How long the last failover took: from losing a server with calls outstanding to the first answer to a resent call (null: none yet).</summary>
    public TimeSpan? LastFailover => _client.LastFailover;

    /// <summary>When (Unix ms, wall clock) the last failover completed (-1: none yet): comparable across processes on one machine.</summary>
    public long LastFailoverAnsweredUnixMs => _client.LastFailoverAnsweredUnixMs;

    /// <summary>The work queue's counts as of this worker's last claim.</summary>
    public WorkProgress WorkCounts => _client.WorkCounts;

    /// <summary>Workers alive in the latest view this worker has (a dead worker's calls are refused from then on).</summary>
    public int LiveWorkers => _client.View.Workers.Count;

    /// <summary>Sees every call get its timestamp and complete (benchmarks measure latency with it); null on the normal path.</summary>
    public ICallObserver? CallObserver
    {
        get => _client.Observer;
        set => _client.Observer = value;
    }

    /// <summary>Which server (by slot, 0..<see cref="TableBlocks.ServerCount"/>) is primary for each block of a dense table, in the current view.</summary>
    public TableBlocks BlocksOf(PsTable table) => new(_client.View.PlacementOf(table.Info));
}

/// <summary>A job's traffic: the sum over its workers and the sum over its servers.</summary>
public sealed record JobTrafficReport(TrafficReport Workers, TrafficReport Servers);

/// <summary>Where the blocks of a dense table live in one view.</summary>
public sealed class TableBlocks
{
    private readonly TablePlacement _placement;

    internal TableBlocks(TablePlacement placement) => _placement = placement;

    /// <summary>Servers the table's blocks are spread over.</summary>
    public int ServerCount => _placement.ServerCount;

    /// <summary>The slot (0..<see cref="ServerCount"/>) of the server that is primary for <paramref name="block"/>.</summary>
    public int SlotOfBlock(long block) => _placement.SlotOfBlock(block);
}
