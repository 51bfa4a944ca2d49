using Microsoft.Extensions.Logging;
using ParameterServer.Core.Cluster;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// What every room of a server needs to name itself: its id (set once the scheduler gives one), its options, its log,
/// its traffic counters, whether it is stopping, and whether it may serve (its lease). Settings, not shared state: no
/// room keeps its data here.
/// </summary>
internal sealed class LocalServer(ServerOptions options, ILogger log, Func<bool> stopping)
{
    public int Id { get; set; } = -1;

    public ServerOptions Options { get; } = options;

    public ILogger Log { get; } = log;

    /// <summary>Frames and bytes in and out of this server, by message type and peer.</summary>
    public TrafficMeter Traffic { get; } = new();

    public bool Stopping => stopping();

    /// <summary>Whether the scheduler still counts this server as a member: without the lease it serves nothing (fencing).</summary>
    public SchedulerLease Lease { get; } = new();
}
