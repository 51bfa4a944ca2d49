using ParameterServer.Protocol;
using ParameterServer.Scheduler.Membership;

namespace ParameterServer.Scheduler;

/// <summary>
/// Liveness: a monitor thread declares nodes dead after HeartbeatTimeout of silence, completes what waited for them
/// (declarations, migrations, barriers, work) and ends the job when a loss leaves some keys without a copy.
/// </summary>
public sealed partial class SchedulerNode
{
    private void MarkDead(NodeState node, string why, List<Outgoing> outbox)
    {
        node.Alive = false;
        StateChanged();
        FailCheckpointWaits(node);
        if (!node.Finished)
        {
            OnWorkerDied(node);
        }
        if (node.Finished || _shuttingDown)
        {
            _log.LogNodeGone(node.Info.Describe(), why);
        }
        else
        {
            _log.LogNodeDead(node.Info.Describe(), why);
        }
        if (_shuttingDown)
        {
            return;
        }
        if (node.Role == NodeRole.Server && !node.Finished && LosesData(node, outbox))
        {
            return;
        }
        Publish(outbox);
        if (node.Role == NodeRole.Server)
        {
            _lastServerLossView = _viewNumber;
        }
        ReleaseBarrier(outbox);
        CompleteDeclares(outbox);
        MaybeShutDown(outbox);
        if (node.Role == NodeRole.Server && !_nodes.Values.Any(n => n.Role == NodeRole.Server && n.Alive))
        {
            _log.LogNoServerAlive();
            _shuttingDown = true;
            foreach (var n in _nodes.Values.Where(n => n.Alive))
            {
                outbox.Add(new Outgoing(n.Connection, new FrameHeader { Type = MessageType.Shutdown, SenderId = SchedulerId }, []));
            }
            _completion.TrySetResult(1);
        }
    }

    private uint _lastServerLossView;

    /// <summary>Whether every live server holding ranges has refilled its copies since the last server died (the status tells operators and the chaos bench).</summary>
    private bool CopiesComplete() => LiveHolders().All(n => n.RefilledView >= _lastServerLossView);

    /// <summary>
    /// The live servers that hold ranges. A server still joining holds none (its points come with its migration), so it
    /// has no copies to restore: counting it would call the copies incomplete until it happened to report a refill.
    /// </summary>
    private IEnumerable<NodeState> LiveHolders() => _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive && n.Points != 0);
    private int _serversLostSinceHealthy;

    /// <summary>
    /// A server died: were all copies of some key range on servers lost since the copies were last complete? Copies
    /// are complete again once every live server has reported its refill for a view published after the last loss.
    /// If so the job cannot go on with correct values: it ends, saying so, instead of serving zeros.
    /// </summary>
    private bool LosesData(NodeState node, List<Outgoing> outbox)
    {
        var live = LiveHolders().ToList();
        if (_serversLostSinceHealthy > 0 && live.All(n => n.RefilledView >= _lastServerLossView))
        {
            _serversLostSinceHealthy = 0;
        }
        _serversLostSinceHealthy++;
        int copies = _options.EffectiveReplication;
        if (_serversLostSinceHealthy < copies || !_nodes.Values.Any(n => n.Role == NodeRole.Server && n.Alive))
        {
            return false;
        }
        string why = copies == 1
            ? $"{node.Info.Describe()} held the only copy of its key ranges (replication 1)"
            : $"{_serversLostSinceHealthy} servers died before the copies lost with the first were restored (replication {copies})";
        _log.LogParametersLost(why);
        _shuttingDown = true;
        AddShutdownFrames(outbox);
        _completion.TrySetResult(1);
        return true;
    }

    /// <summary>
    /// Whether this scheduler, having standbys (a shared store), should suspect itself rather than the nodes: when one
    /// node's silence reaches the heartbeat timeout, most of the live nodes (two at least) have been silent for half
    /// of it, so they fell silent together. Killed nodes are noticed by their closed connections, not
    /// by silence, so this is a partition between this scheduler and the job (with etcd still reachable, or the
    /// lease would have lapsed first). It steps down without marking anyone dead, so a standby that can reach the
    /// nodes resumes the job as it was. Were the nodes all truly gone, each standby steps down in turn: the job was
    /// over anyway.
    /// </summary>
    private bool CutOffFromMostNodes(int silent, int alive) =>
        _options.StateStore is not null && !_shuttingDown && silent >= 2 && silent * 2 > alive;

    private void MonitorLoop()
    {
        int tickMs = Math.Max(10, (int)(_options.HeartbeatInterval.TotalMilliseconds / 4));
        long lastTick = Environment.TickCount64;
        while (!_stop.IsCancellationRequested)
        {
            Thread.Sleep(tickMs);
            if (!IsActive())
            {
                return; // deposed (a standby took over): this scheduler stops, even with nothing to send
            }
            var outbox = new List<Outgoing>();
            lock (_lock)
            {
                long now = NowMs;
                // Measured on the real clock, not the options' one (which tests move by hand): the scheduler itself
                // did not run for a while (a GC pause, SIGSTOP, a frozen VM). The nodes' silence was its own; they
                // get a full heartbeat timeout from now to be heard, instead of all being declared dead at once.
                long frozenMs = Environment.TickCount64 - lastTick - tickMs;
                lastTick = Environment.TickCount64;
                if (frozenMs > _options.HeartbeatTimeout.TotalMilliseconds / 2)
                {
                    _log.LogSchedulerFrozen(frozenMs / 1000.0);
                    foreach (var node in _nodes.Values.Where(n => n.Alive))
                    {
                        node.LastSeen = Math.Max(node.LastSeen, now);
                    }
                }
                double timeoutMs = _options.HeartbeatTimeout.TotalMilliseconds;
                var alive = _nodes.Values.Where(n => n.Alive).ToList();
                var silent = alive.Where(n => now - n.LastSeen > timeoutMs).ToList();
                int quiet = silent.Count == 0 ? 0 : alive.Count(n => now - n.LastSeen > timeoutMs / 2);
                if (CutOffFromMostNodes(quiet, alive.Count))
                {
                    _log.LogSteppingDown(quiet, alive.Count, _options.HeartbeatTimeout.TotalSeconds / 2);
                    Depose();
                    return;
                }
                foreach (var node in silent)
                {
                    MarkDead(node, $"no heartbeat for {_options.HeartbeatTimeout.TotalSeconds:0.#} s", outbox);
                    node.Connection?.Close("declared dead: no heartbeat");
                }
                CompleteDeclares(outbox);
                MaybeFinishMigration(outbox);
                ShutDownLeftServers(outbox);
                if (!_ready && Environment.TickCount64 - _startedAt > _options.StartupTimeout.TotalMilliseconds && !_completion.Task.IsCompleted)
                {
                    int servers = _nodes.Values.Count(n => n.Role == NodeRole.Server);
                    int workers = _nodes.Values.Count(n => n.Role == NodeRole.Worker);
                    _log.LogStartupTimedOut(_options.StartupTimeout.TotalSeconds, _options.Servers, _options.Workers, servers, workers, AdvertisedHost, Port);
                    _shuttingDown = true;
                    foreach (var n in _nodes.Values.Where(n => n.Alive))
                    {
                        outbox.Add(new Outgoing(n.Connection, new FrameHeader { Type = MessageType.Shutdown, SenderId = SchedulerId }, []));
                    }
                    _completion.TrySetResult(1);
                }
            }
            Flush(outbox);
        }
    }
}
