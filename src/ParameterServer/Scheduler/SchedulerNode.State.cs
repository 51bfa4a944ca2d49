using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.JobControl;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Scheduler.Metadata;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>
/// Scheduler restart: with a state directory the scheduler keeps its metadata (nodes, tables, view number, work
/// queue, checkpoint epoch) in a metadata store (<see cref="FileMetadataStore"/>), rewritten shortly after each change. A
/// scheduler started again on the same port and directory resumes the job: the nodes reconnect and rejoin with
/// their ids; those that do not come back within the rejoin window are declared dead.
/// </summary>
public sealed partial class SchedulerNode
{
    private static readonly TimeSpan RejoinWindow = SchedulerLease.RestartGrace; // nodes' leases outlast a restart by no more
    private readonly AutoResetEvent _stateChanged = new(false);
    private readonly List<(long Version, Outgoing Reply)> _afterDurable = new(); // under _lock
    private long _stateVersion; // under _lock: bumped by every change
    private long _durableVersion; // under _lock: the version last written

    /// <summary>Notes a change of the persisted state (under _lock).</summary>
    private void StateChanged()
    {
        _stateVersion++;
        _stateChanged.Set();
    }

    /// <summary>
    /// Work-queue answers go out only once the state that records them is on disk (group commit): a scheduler that
    /// dies before writing never told anyone, so a restarted one agrees with every worker about what is done.
    /// </summary>
    private void ReplyWhenDurable(Outgoing reply, List<Outgoing> outbox)
    {
        if (_store is null)
        {
            outbox.Add(reply);
            return;
        }
        StateChanged();
        _afterDurable.Add((_stateVersion, reply));
    }

    /// <summary>Where the metadata is kept: a file in the state directory, or nowhere (null) without one.</summary>
    private readonly IMetadataStore? _store;

    /// <summary>Loads the persisted state if there is one (a restart); returns whether it did.</summary>
    private bool LoadState()
    {
        if (_store?.Load() is not { } state)
        {
            return false;
        }
        _viewNumber = state.View;
        _ready = state.Ready;
        _nextNodeId = state.NextNodeId;
        _epoch = Math.Max(_epoch, state.Epoch);
        _barriers.Restore(state.Barriers);
        // Server losses whose copies may not be restored yet: the servers report their refills again for the views
        // published after the restart, so a second loss meanwhile is still seen as one too many (Liveness.LosesData).
        _lastServerLossView = state.LastServerLossView;
        _serversLostSinceHealthy = state.ServersLostSinceHealthy;
        _tables.Clear();
        _tables.AddRange(state.Tables);
        long rejoinBy = NowMs + (long)RejoinWindow.TotalMilliseconds; // silence is counted from the end of the rejoin window
        foreach (var n in state.Nodes)
        {
            _nodes[n.Id] = new NodeState(n.Id, n.Role, n.Rank, n.Host, n.Port, null, n.Handlers, rejoinBy)
            {
                Alive = n.Alive,
                Finished = n.Finished,
                Points = n.Points,
                TargetPoints = n.TargetPoints,
                Joined = n.Joined,
                Left = n.Left,
                Draining = n.Draining,
                BarrierBase = n.BarrierBase,
            };
        }
        if (state.Nodes.Any(n => n.Alive && n.Points != n.TargetPoints))
        {
            _transitionView = state.View + 1; // a migration was under way: its copies are confirmed again for the next view
            _migrations.Add(new Migration("a migration resumed after the scheduler restarted", state.View + 1, Environment.TickCount64, 0));
            _log.LogResumingMigration(string.Join(", ", state.Nodes.Where(n => n.Alive && n.Points != n.TargetPoints).Select(n => $"server {n.Id} ({n.Points} -> {n.TargetPoints})")));
        }
        if (state.Work is { } work)
        {
            _work = WorkQueue.Import(work, _options.OnWorkerFailure, _options.BackupAfter, NowMs);
        }
        _log.LogResumingJob(_store.Location, state.View, state.Nodes.Count(n => n.Alive), RejoinWindow.TotalSeconds + _options.HeartbeatTimeout.TotalSeconds);
        return true;
    }

    private void StartStateWriter()
    {
        if (_store is not { } store)
        {
            return;
        }
        lock (_lock)
        {
            StateChanged();
        }
        var writer = new Thread(() =>
        {
            while (!_stop.IsCancellationRequested)
            {
                _stateChanged.WaitOne(50);
                PersistedState state;
                long version;
                lock (_lock)
                {
                    if (Volatile.Read(ref _deposed) != 0)
                    {
                        return; // stepped down or deposed: the state is the next active scheduler's now
                    }
                    if (_stateVersion == _durableVersion)
                    {
                        continue;
                    }
                    version = _stateVersion;
                    state = new PersistedState(1, _viewNumber, _ready, _nextNodeId, _epoch,
                        _nodes.Values.OrderBy(n => n.Id).Select(n => new PersistedNode(n.Id, n.Role, n.Rank, n.Host, n.Port, n.Alive, n.Finished, n.Handlers, n.Points, n.TargetPoints, n.Joined, n.Left, n.Draining, n.BarrierBase)).ToArray(),
                        _tables.ToArray(), _work?.Export(), _barriers.Released, _lastServerLossView, _serversLostSinceHealthy);
                }
                try
                {
                    store.Save(state);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    _log.LogStateWriteFailed(store.Location, ex.Message);
                    Thread.Sleep(500);
                    continue;
                }
                catch (PsException ex) when (ex.Code == PsErrorCode.Conflict)
                {
                    _log.LogStateWriteFailed(store.Location, ex.Message);
                    Depose(); // the store refused: another scheduler is active; this one stops
                    return;
                }
                var ready = new List<Outgoing>();
                lock (_lock)
                {
                    _durableVersion = version;
                    _afterDurable.RemoveAll(r =>
                    {
                        if (r.Version > version)
                        {
                            return false;
                        }
                        ready.Add(r.Reply);
                        return true;
                    });
                }
                Flush(ready);
            }
        })
        { IsBackground = true, Name = "ps-scheduler-state" };
        writer.Start();
    }

    /// <summary>A node of this job reconnects after the scheduler restarted.</summary>
    private void OnRejoin(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        int[] fields = ControlMessages.ReadInts(payload, payload.Length / sizeof(int));
        if (fields.Length >= 2 && connection.AuthenticatedRole is { } proven && (int)proven != fields[1])
        {
            outbox.Add(Error(connection, header, ErrorCode.Forbidden, $"{connection.Peer} proved the role {proven.ToString().ToLowerInvariant()} and rejoins as a {((NodeRole)fields[1]).ToString().ToLowerInvariant()}"));
            return;
        }
        if (fields.Length >= 2 && _nodes.TryGetValue(fields[0], out var dead) && (int)dead.Role == fields[1] && !dead.Alive && !dead.Info.Left)
        {
            // Fencing: a node that was frozen or cut off past the heartbeat timeout was replaced; it must not come back as itself.
            outbox.Add(Error(connection, header, ErrorCode.Conflict,
                $"{dead.Info.Describe()} was declared dead (silent for over {_options.HeartbeatTimeout.TotalSeconds:0.#} s) and its work handed to others; it may not rejoin: start a new process with --join"));
            return;
        }
        if (fields.Length < 2 || !_nodes.TryGetValue(fields[0], out var node) || (int)node.Role != fields[1] || !node.Alive)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict,
                $"node {(fields.Length > 0 ? fields[0] : -1)} is not a live node of this job: the scheduler was restarted without its --state-dir, the node was declared dead, or it joined just before the scheduler stopped (start it again with --join)"));
            return;
        }
        node.Connection?.Close("replaced by a rejoin");
        node.Connection = connection;
        node.LastSeen = NowMs;
        connection.Tag = node;
        connection.Peer = node.Info.Describe();
        _work?.OnWorkerRejoined(node.Id, fields[2..]);
        _log.LogNodeRejoined(node.Info.Describe());
        outbox.Add(Reply(connection, header, []));
        Publish(outbox);
    }
}
