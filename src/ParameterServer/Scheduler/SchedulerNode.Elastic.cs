using System.Globalization;
using System.Text;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.Elastic;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>
/// Elastic scaling: servers and workers join and leave a running job. A server's key ranges move in two phases (the
/// paper's section 4.5): the scheduler first publishes a transition view in which every block's chain is its current
/// chain plus the members of its target chain that lack it, so the current primaries copy those blocks to them (refill)
/// while still serving, and forward every push to them as well. Once every primary reports its copies done, the
/// scheduler publishes the target view: the new owners serve, old owners refuse (WrongOwner) and workers send the
/// refused calls again to the new owners. Nothing is lost (a refused call was applied nowhere) or applied twice.
/// </summary>
public sealed partial class SchedulerNode
{
    /// <summary>How long a drained server stays up after the view without it, for calls still on their way to it.</summary>
    private static readonly TimeSpan LeaveGrace = TimeSpan.FromSeconds(5);

    /// <summary>A migration waiting for its copies: what it does, when and in which view it started, how much moves.</summary>
    private sealed record Migration(string What, uint StartView, long StartedAt, double MovedFraction);

    private readonly List<Migration> _migrations = new(); // under _lock
    private readonly List<(NodeState Node, uint View, long Deadline)> _leaving = new(); // under _lock
    private uint _transitionView; // the view in which the targets last changed: the copies must be made for it
    private bool _migrationSlowLogged;

    /// <summary>Migrations done in this job: (what, milliseconds, fraction of the key space moved), for status and tests.</summary>
    private readonly List<(string What, double Ms, double Moved)> _migrationsDone = new(); // under _lock

    private void OnJoin(Connection connection, in FrameHeader header, NodeRole role, string host, int port, string[] handlers, long maxMemoryBytes, List<Outgoing> outbox)
    {
        if (!_ready || _shuttingDown)
        {
            outbox.Add(Error(connection, header, ErrorCode.NotReady, _shuttingDown
                ? "the job is ending; there is nothing to join"
                : $"the job has not started yet (it waits for its {_options.Servers} servers and {_options.Workers} workers): start this node without --join"));
            return;
        }
        if (role == NodeRole.Server)
        {
            var missing = _tables.Select(t => t.Handler.Split(':', 2)[0]).Distinct().Where(h => !handlers.Contains(h)).ToList();
            if (missing.Count > 0)
            {
                outbox.Add(Error(connection, header, ErrorCode.InvalidArgument,
                    $"this server does not know the update handlers {string.Join(", ", missing)} that the job's tables use; it knows: {string.Join(", ", handlers)}"));
                return;
            }
        }
        int rank = _nodes.Values.Count(n => n.Role == role);
        var node = new NodeState(_nextNodeId++, role, rank, host, port, connection, handlers, NowMs)
        {
            MaxMemoryBytes = maxMemoryBytes,
            Joined = true,
            Points = role == NodeRole.Server ? 0 : -1,
            TargetPoints = role == NodeRole.Server ? _options.VirtualNodes : -1,
            // Barriers passed, plus the one the others wait at now: the newcomer's first barrier is the next they reach.
            BarrierBase = _barriers.Released + (_barriers.AnyWaiting ? 1 : 0),
        };
        _nodes[node.Id] = node;
        connection.Tag = node;
        connection.Peer = node.Info.Describe();
        outbox.Add(Reply(connection, header, ControlMessages.Ints(node.Id, node.Rank, (int)_options.HeartbeatInterval.TotalMilliseconds, (int)node.BarrierBase)));
        if (role == NodeRole.Server)
        {
            StartMigration($"{node.Info.Describe()} joins", outbox);
        }
        else
        {
            _log.LogNodeJoined(node.Info.Describe(), _nodes.Values.Count(n => n.Role == NodeRole.Worker && n.Alive && !n.Finished));
            Publish(outbox);
        }
    }

    /// <summary>`pserver drain --node ID`: a server's ranges move away and it exits; a worker hands its remaining work back and exits.</summary>
    private void OnDrain(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        int id = ControlMessages.ReadInts(payload, 1)[0];
        if (!_nodes.TryGetValue(id, out var node) || !node.Alive)
        {
            string live = string.Join(", ", _nodes.Values.Where(n => n.Alive).Select(n => n.Info.Describe()));
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, $"node {id} is not a live node of this job; live: {live}"));
            return;
        }
        if (!_ready || _shuttingDown)
        {
            outbox.Add(Error(connection, header, ErrorCode.NotReady, "the job is not running (starting or ending): nothing to drain"));
            return;
        }
        if (node.Role == NodeRole.Worker)
        {
            if (node.Finished || node.Draining)
            {
                outbox.Add(Error(connection, header, ErrorCode.Conflict, $"{node.Info.Describe()} is {(node.Finished ? "finished" : "draining already")}"));
                return;
            }
            if (_work is null)
            {
                outbox.Add(Error(connection, header, ErrorCode.InvalidArgument,
                    $"{node.Info.Describe()} cannot hand its data over: this job's app takes no work units from the scheduler's queue (PsClient.ClaimWorkAsync), it splits the data by rank. Let it finish, or stop it (its data is then not trained on)"));
                return;
            }
            node.Draining = true;
            outbox.Add(new Outgoing(node.Connection, new FrameHeader { Type = MessageType.Drain, SenderId = SchedulerId }, []));
            _log.LogDraining(node.Info.Describe());
            outbox.Add(Reply(connection, header, Encoding.UTF8.GetBytes($"{node.Info.Describe()} takes no more work units; it leaves after its current one and the others do the rest")));
            return;
        }
        if (node.Role != NodeRole.Server)
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, $"node {id} is the {node.Role.ToString().ToLowerInvariant()}; only servers and workers can be drained"));
            return;
        }
        if (node.TargetPoints == 0)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict, $"{node.Info.Describe()} is draining already"));
            return;
        }
        if (!_nodes.Values.Any(n => n.Role == NodeRole.Server && n.Alive && n.Id != id && n.TargetPoints != 0))
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, $"{node.Info.Describe()} is the last server: its parameters would have nowhere to go. Add a server (pserver server --join) first"));
            return;
        }
        node.TargetPoints = 0;
        double share = _view.Ring.Shares().GetValueOrDefault(node.Id);
        StartMigration($"{node.Info.Describe()} drains", outbox);
        outbox.Add(Reply(connection, header, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{node.Info.Describe()} drains: its ranges ({share:P1} of the ring) are copied to their new owners, then it exits; watch with pserver status"))));
    }

    /// <summary>`pserver rebalance`: moves virtual nodes from the servers with the largest ring shares to those with the smallest.</summary>
    private void OnRebalance(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        bool dryRun = payload.Length >= 4 && ControlMessages.ReadInts(payload, 1)[0] == 1;
        if (_view.InTransition)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict, "a migration is in progress; rebalance once it is done (pserver status shows it)"));
            return;
        }
        var servers = _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive).OrderBy(n => n.Id).ToList();
        var points = servers.ToDictionary(n => n.Id, n => n.Points < 0 ? _options.VirtualNodes : n.Points);
        var plan = RebalancePlan.Compute(points, _options.VirtualNodes);
        string summary = string.Create(CultureInfo.InvariantCulture,
            $"largest ring share / mean: {plan.Before:0.000} now, {plan.After:0.000} after moving {plan.Moves} virtual nodes ({plan.MovedFraction:P1} of the key space moves)");
        if (dryRun || plan.Moves == 0)
        {
            outbox.Add(Reply(connection, header, Encoding.UTF8.GetBytes((plan.Moves == 0 ? "balanced already: " : "dry run: ") + summary)));
            return;
        }
        foreach (var n in servers)
        {
            n.TargetPoints = plan.Points[n.Id];
        }
        StartMigration($"rebalance ({summary})", outbox);
        outbox.Add(Reply(connection, header, Encoding.UTF8.GetBytes("rebalancing: " + summary)));
    }

    /// <summary>Publishes the transition view for targets just changed; the migration finishes once its copies are made.</summary>
    private void StartMigration(string what, List<Outgoing> outbox)
    {
        Publish(outbox);
        _transitionView = _viewNumber;
        _migrationSlowLogged = false;
        double moved = _view.MovedRingFraction();
        _migrations.Add(new Migration(what, _viewNumber, Environment.TickCount64, moved));
        _log.LogMigrationStarted(_viewNumber, what, moved);
    }

    /// <summary>When every current owner has copied its moving blocks, publishes the target view (and lets drained servers go).</summary>
    private void MaybeFinishMigration(List<Outgoing> outbox)
    {
        if (!_view.InTransition || _shuttingDown)
        {
            return;
        }
        // Only servers that own ranges now copy anything; a joining server reports nothing. Workers must route by the
        // transition view too: a push they cut by an older view then has had the whole copy phase to arrive, and one
        // cut by the transition view keeps its values in its frame, so it can be sent again if refused.
        var lagging = _nodes.Values.Where(n => n.Alive && ((n.Role == NodeRole.Server && n.Points != 0 && n.RefilledView < _transitionView)
            || (n.Role == NodeRole.Worker && !n.Finished && n.AckedView < _transitionView))).ToList();
        if (lagging.Count > 0)
        {
            long started = _migrations.Count > 0 ? _migrations.Min(m => m.StartedAt) : Environment.TickCount64;
            if (!_migrationSlowLogged && Environment.TickCount64 - started > 30_000)
            {
                _migrationSlowLogged = true;
                _log.LogMigrationStillCopying(string.Join(", ", lagging.Select(n => n.Info.Describe())), _transitionView);
            }
            return;
        }
        uint finalView = _viewNumber + 1;
        foreach (var n in _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive))
        {
            n.Points = n.TargetPoints;
            if (n.Points == 0)
            {
                n.Alive = false;
                n.Left = true;
                _leaving.Add((n, finalView, DeadlineAfter(LeaveGrace)));
            }
        }
        Publish(outbox);
        foreach (var m in _migrations)
        {
            double ms = Environment.TickCount64 - m.StartedAt;
            _migrationsDone.Add((m.What, ms, m.MovedFraction));
            _log.LogMigrationDone(ms, m.StartView, _viewNumber, m.What, m.MovedFraction);
        }
        _migrations.Clear();
    }

    /// <summary>A drained server exits once every live node routes by a view without it (or after a grace period).</summary>
    private void ShutDownLeftServers(List<Outgoing> outbox)
    {
        for (int i = _leaving.Count - 1; i >= 0; i--)
        {
            var (node, view, deadline) = _leaving[i];
            bool everyoneMoved = _nodes.Values.Where(n => n.Alive).All(n => n.AckedView >= view);
            if (!everyoneMoved && Environment.TickCount64 < deadline)
            {
                continue;
            }
            _leaving.RemoveAt(i);
            _log.LogNodeDrained(node.Info.Describe());
            outbox.Add(new Outgoing(node.Connection, new FrameHeader { Type = MessageType.Shutdown, SenderId = SchedulerId }, []));
        }
    }

    /// <summary>Migrations so far and in progress, one line each (for the status answer; under _lock).</summary>
    private List<string> MigrationLines()
    {
        {
            var lines = _migrationsDone.Select(m => string.Create(CultureInfo.InvariantCulture, $"done in {m.Ms:0} ms: {m.What}; {m.Moved:P1} of the key space moved")).ToList();
            lines.AddRange(_migrations.Select(m => string.Create(CultureInfo.InvariantCulture,
                $"in progress for {Environment.TickCount64 - m.StartedAt} ms: {m.What}; {m.MovedFraction:P1} of the key space moves")));
            return lines;
        }
    }
}
