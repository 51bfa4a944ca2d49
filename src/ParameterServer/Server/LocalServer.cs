using Microsoft.Extensions.Logging;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// What every room of a server needs to name itself: its id (set once the scheduler gives one), its options, its log,
/// its traffic counters, and whether it is stopping. Settings, not shared state: no room keeps its data here.
/// </summary>
internal sealed class LocalServer(ServerOptions options, ILogger log, Func<bool> stopping)
{
    public int Id { get; set; } = -1;

    public ServerOptions Options { get; } = options;

    public ILogger Log { get; } = log;

    /// <summary>Frames and bytes in and out of this server, by message type and peer.</summary>
    public TrafficMeter Traffic { get; } = new();

    public bool Stopping => stopping();
}
