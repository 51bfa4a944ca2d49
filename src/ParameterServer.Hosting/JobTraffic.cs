using ParameterServer.Client;

namespace ParameterServer.Hosting;

/// <summary>
/// A job's traffic, added up over its nodes: what the workers sent and received (their counters as published to the
/// scheduler) and what the servers did (asked directly). Every worker calls <see cref="Publish"/> before a barrier;
/// after it, any worker can <see cref="CollectAsync"/>.
/// </summary>
public static class JobTraffic
{
    /// <summary>Sends this worker's counters to the scheduler; the barrier that follows orders them before any collection.</summary>
    public static void Publish(PsClient client) => client.Diagnostics.PublishTraffic();

    /// <summary>The job's traffic, summed over its workers and over its servers.</summary>
    public static async Task<(TrafficReport Workers, TrafficReport Servers)> CollectAsync(PsClient client, CancellationToken cancellationToken)
    {
        var job = await client.Diagnostics.FetchJobTrafficAsync(cancellationToken).ConfigureAwait(false);
        return (job.Workers, job.Servers);
    }

    /// <summary>
    /// The fields every app's JSON summary carries: <c>bytes_sent</c> and <c>bytes_received</c> for the job (each frame
    /// counted once by its sender, once by its receiver), and <c>traffic</c>: by role and by message type.
    /// </summary>
    public static void AddTo(IDictionary<string, object?> summary, TrafficReport workers, TrafficReport servers)
    {
        var all = TrafficReport.Sum([workers, servers]);
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
