using ParameterServer.Client.JobControl;
using ParameterServer.Core.Cluster;

namespace ParameterServer.Client.Routing;

// Room: Routing. Owns the newest view the scheduler sent (which may be newer than the routes in force, see
// RouteTable) and a lock callers wait on for a view with some property. Uses the client's shutdown to stop waiting.

/// <summary>The newest cluster view this worker was told of; callers may wait for one that satisfies a condition.</summary>
internal sealed class ViewFeed(ClientShutdown shutdown)
{
    private readonly object _lock = new(); // Monitor.Wait/PulseAll: a newer view, or shutdown
    private volatile ClusterView? _latest;

    /// <summary>The newest view, or null before the first.</summary>
    public ClusterView? Latest => _latest;

    /// <summary>Takes a view from the scheduler; true when it is newer than the one held.</summary>
    public bool Offer(ClusterView view)
    {
        bool newer;
        lock (_lock)
        {
            newer = _latest is null || view.Number > _latest.Number;
            if (newer)
            {
                _latest = view;
            }
            Monitor.PulseAll(_lock);
        }
        return newer;
    }

    /// <summary>Wakes the callers of <see cref="WaitFor"/> (the worker is shutting down).</summary>
    public void Wake()
    {
        lock (_lock)
        {
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Whether a server was drained (left the job after its ranges moved) rather than lost.</summary>
    public bool LeftGracefully(int serverId) => _latest?.Nodes.Any(n => n.Id == serverId && n.Left) == true;

    /// <summary>Waits until the newest view satisfies <paramref name="condition"/>; throws on timeout or shutdown.</summary>
    public ClusterView WaitFor(Func<ClusterView, bool> condition, string what, TimeSpan timeout, int nodeId)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_lock)
        {
            while (_latest is null || !condition(_latest))
            {
                shutdown.ThrowIfShutDown(nodeId);
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout, $"worker {nodeId} waited {timeout.TotalSeconds:0.#} s for {what}");
                }
                Monitor.Wait(_lock, (int)left);
            }
            return _latest;
        }
    }
}
