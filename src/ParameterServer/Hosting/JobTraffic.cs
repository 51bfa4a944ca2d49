using System.Text.Json;
using ParameterServer.Client;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Hosting;

/// <summary>
/// A job's traffic, added up over its nodes: what the workers sent and received (their counters as published to the
/// scheduler) and what the servers did (asked directly). Every worker calls <see cref="Publish"/> before a barrier;
/// after it, any worker can <see cref="CollectAsync"/>.
/// </summary>
internal static class JobTraffic
{
    /// <summary>Sends this worker's counters to the scheduler; the barrier that follows orders them before any collection.</summary>
    public static void Publish(PsClient client) => client.PublishTraffic();

    public static async Task<(TrafficSnapshot Workers, TrafficSnapshot Servers)> CollectAsync(PsClient client, CancellationToken cancellationToken)
    {
        var nodes = await client.FetchTrafficAsync(cancellationToken).ConfigureAwait(false);
        var view = client.View;
        var workerIds = view.Nodes.Where(n => n.Role == NodeRole.Worker).Select(n => n.Id).ToHashSet();
        var workers = TrafficSnapshot.Sum(nodes.Where(n => workerIds.Contains(n.Key)).Select(n => n.Value));
        var servers = new List<TrafficSnapshot>();
        foreach (string json in await client.GetServerStatsAsync(cancellationToken).ConfigureAwait(false))
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("traffic_counters", out var encoded))
            {
                var reader = new PayloadReader(Convert.FromBase64String(encoded.GetString()!));
                servers.Add(TrafficSnapshot.Read(ref reader));
            }
        }
        return (workers, TrafficSnapshot.Sum(servers));
    }

    /// <summary>
    /// The fields every app's JSON summary carries: <c>bytes_sent</c> and <c>bytes_received</c> for the job (each frame
    /// counted once by its sender, once by its receiver), and <c>traffic</c>: by role and by message type.
    /// </summary>
    public static void AddTo(IDictionary<string, object?> summary, TrafficSnapshot workers, TrafficSnapshot servers)
    {
        var all = TrafficSnapshot.Sum([workers, servers]);
        summary["bytes_sent"] = all.BytesSent;
        summary["bytes_received"] = all.BytesReceived;
        summary["traffic"] = new Dictionary<string, object>
        {
            ["workers_sent"] = workers.BytesSent,
            ["workers_received"] = workers.BytesReceived,
            ["servers_sent"] = servers.BytesSent,
            ["servers_received"] = servers.BytesReceived,
            ["by_type"] = all.Types().ToDictionary(t => t.Type, t => new Dictionary<string, long>
            {
                ["messages_sent"] = t.MessagesOut,
                ["bytes_sent"] = t.BytesOut,
                ["messages_received"] = t.MessagesIn,
                ["bytes_received"] = t.BytesIn,
            }),
        };
    }
}
