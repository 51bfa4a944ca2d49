using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.JobControl;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Scheduler.Metadata;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>
/// The scheduler: registers nodes and gives them ids, declares tables, publishes versioned cluster views,
/// runs barriers, watches heartbeats and shuts the job down when every worker has finished.
/// All state sits behind one lock (control plane only); frames are sent after the lock is released.
/// </summary>
public sealed partial class SchedulerNode : IAsyncDisposable
{
    private const int SchedulerId = 0;

    private readonly SchedulerOptions _options;
    private readonly ILogger _log;
    private readonly JobEvents _events;
    private readonly Listener _listener;
    private readonly TrafficMeter _traffic = new();
    private readonly Lock _lock = new();
    private readonly byte[] _heartbeatEcho; // a heartbeat's echo: this scheduler's heartbeat timeout (ms), for the node's lease
    private readonly Dictionary<int, NodeState> _nodes = new();
    private readonly List<TableInfo> _tables = new();
    private readonly Barriers _barriers = new();
    private readonly List<PendingDeclare> _declares = new();
    private readonly TaskCompletionSource<int> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private readonly long _startedAt = Environment.TickCount64; // the startup timeout runs on the real clock
    private readonly TimeProvider _time;
    private ClusterView _view;
    private uint _viewNumber;
    private int _nextNodeId = 1;
    private bool _ready;
    private bool _shuttingDown;

    private SchedulerNode(SchedulerOptions options, ILoggerFactory loggers)
    {
        options.Validate();
        _options = options;
        _heartbeatEcho = ControlMessages.Ints((int)options.HeartbeatTimeout.TotalMilliseconds);
        _time = options.TimeProvider;
        _events = new JobEvents(loggers.CreateLogger("scheduler"), _time);
        _log = _events;
        _store = options.StateStore is { } shared ? new SnapshotMetadataStore(shared) : options.StateDirectory is { } dir ? new FileMetadataStore(dir) : null;
        OpenRestore();
        LoadState(); // before listening: a node rejoining a resumed job must find itself
        _listener = new Listener(options.Host, options.Port, stream => new Connection(stream, new Handler(this), options.Transport, _log, $"node at {stream.RemoteAddress}", _traffic), _log, options.Transport);
        _view = BuildView();
        StartStateWriter();
        StartMetrics();
        var monitor = new Thread(MonitorLoop) { IsBackground = true, Name = "ps-scheduler-monitor" };
        monitor.Start();
    }

    /// <summary>Starts listening; throws <see cref="TransportException"/> if the port cannot be bound.</summary>
    public static SchedulerNode Start(SchedulerOptions options, ILoggerFactory? loggers = null) => new(options, loggers ?? NullLoggerFactory.Instance);

    public int Port => _listener.Port;

    /// <summary>Completes when the job is over: 0 when every worker finished, 1 when the job failed (the log says why).</summary>
    public Task<int> Completion => _completion.Task;

    internal ClusterView View
    {
        get
        {
            lock (_lock)
            {
                return _view;
            }
        }
    }

    /// <summary>The job's recent events (joins, deaths, checkpoints, migrations ...), oldest first: the scheduler's log lines for them.</summary>
    public IReadOnlyList<JobEvent> Events => _events.Snapshot();

    /// <summary>Frames to send once the lock is released.</summary>
    private readonly record struct Outgoing(Connection? Connection, FrameHeader Header, byte[] Payload);

    private sealed class Handler(SchedulerNode scheduler) : IFrameHandler
    {
        public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload) => scheduler.OnFrame(connection, header, payload);

        public void OnClosed(Connection connection, string reason) => scheduler.OnClosed(connection, reason);
    }

    private void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (connection.AuthenticatedRole is { } role && !RolePolicy.SchedulerAccepts(role, header.Type))
        {
            Flush([Error(connection, header, ErrorCode.Forbidden, RolePolicy.Refusal("the scheduler", role, header.Type, connection.Peer))]);
            return;
        }
        var outbox = new List<Outgoing>();
        lock (_lock)
        {
            var known = connection.Tag as NodeState;
            if (known is not null)
            {
                known.LastSeen = NowMs;
            }
            try
            {
                switch (header.Type)
                {
                    case MessageType.Register:
                        OnRegister(connection, header, payload, outbox);
                        break;
                    case MessageType.Heartbeat:
                        if (payload.Length > 0 && known is not null)
                        {
                            var reader = new PayloadReader(payload);
                            known.Traffic = TrafficSnapshot.Read(ref reader);
                            if (reader.Remaining > 0)
                            {
                                known.Report = NodeReport.Read(ref reader);
                            }
                        }
                        if (header.RequestId != 0 && known is { Alive: true })
                        {
                            // The echo renews the node's lease (SchedulerLease): it proves this heartbeat was heard.
                            outbox.Add(new Outgoing(connection, new FrameHeader { Type = MessageType.Heartbeat, SenderId = SchedulerId, RequestId = header.RequestId }, _heartbeatEcho));
                        }
                        break;
                    case MessageType.Response:
                        OnViewAck(connection, header, outbox);
                        break;
                    case MessageType.DeclareTable:
                        OnDeclareTable(connection, header, payload, outbox);
                        break;
                    case MessageType.Barrier:
                        OnBarrier(connection, header, outbox);
                        break;
                    case MessageType.Finish:
                        OnFinish(connection, header, outbox);
                        break;
                    case MessageType.DeclareWork:
                        OnDeclareWork(connection, header, payload, outbox);
                        break;
                    case MessageType.ClaimWork:
                        OnClaimWork(connection, header, outbox);
                        break;
                    case MessageType.CompleteWork:
                        OnCompleteWork(connection, header, payload, outbox);
                        break;
                    case MessageType.RefillDone:
                        if (connection.Tag is NodeState refilled)
                        {
                            refilled.RefilledView = Math.Max(refilled.RefilledView, (uint)header.Round);
                            MaybeFinishMigration(outbox);
                        }
                        break;
                    case MessageType.Rejoin:
                        OnRejoin(connection, header, payload, outbox);
                        break;
                    case MessageType.CheckpointDone:
                        OnCheckpointDone(connection, header, payload);
                        break;
                    case MessageType.Drain:
                        OnDrain(connection, header, payload, outbox);
                        break;
                    case MessageType.Rebalance:
                        OnRebalance(connection, header, payload, outbox);
                        break;
                    case MessageType.Status:
                        var w = new PayloadWriter();
                        _view.Write(w);
                        var migrations = MigrationLines();
                        w.WriteInt32(migrations.Count);
                        foreach (string line in migrations)
                        {
                            w.WriteString(line);
                        }
                        var reporting = _nodes.Values.Where(n => n.Traffic is not null).ToList();
                        w.WriteInt32(reporting.Count);
                        foreach (var n in reporting)
                        {
                            w.WriteInt32(n.Id);
                            n.Traffic!.Write(w);
                        }
                        w.WriteInt32(CopiesComplete() ? 1 : 0);
                        var reports = _nodes.Values.Where(n => n.Report is not null && n.Alive).ToList();
                        w.WriteInt32(reports.Count);
                        foreach (var n in reports)
                        {
                            w.WriteInt32(n.Id);
                            n.Report!.Write(w);
                        }
                        outbox.Add(Reply(connection, header, w.WrittenSpan.ToArray()));
                        break;
                    default:
                        outbox.Add(Error(connection, header, ErrorCode.UnsupportedMessage, $"the scheduler does not handle {header.Type} frames"));
                        break;
                }
            }
            catch (ProtocolException ex)
            {
                outbox.Add(Error(connection, header, ErrorCode.MalformedPayload, ex.Message));
            }
            catch (ArgumentException ex)
            {
                outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, ex.Message));
            }
            if (header.Type is not (MessageType.Heartbeat or MessageType.Status or MessageType.Response))
            {
                StateChanged();
            }
        }
        Flush(outbox);
    }

    private void OnRegister(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        var (role, host, port, handlers, join, maxMemoryBytes, jobId) = ControlMessages.ReadRegister(payload);
        if (jobId.Length > 0 && jobId != _options.JobId)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict,
                $"this scheduler runs job '{_options.JobId}'; this {role.ToString().ToLowerInvariant()} was started for job '{jobId}' (--job-id): check --scheduler and --job-id"));
            return;
        }
        if (connection.AuthenticatedRole is { } proven && proven != role && !(proven == NodeRole.Reader && role == NodeRole.Observer))
        {
            outbox.Add(Error(connection, header, ErrorCode.Forbidden, $"{connection.Peer} proved the role {proven.ToString().ToLowerInvariant()} and registers as a {role.ToString().ToLowerInvariant()}"));
            return;
        }
        if (role == NodeRole.Observer)
        {
            outbox.Add(Reply(connection, header, ControlMessages.Ints(-1, -1, (int)_options.HeartbeatInterval.TotalMilliseconds)));
            return;
        }
        if (role is not (NodeRole.Server or NodeRole.Worker))
        {
            throw new ArgumentException($"cannot register a node with role {role}");
        }
        int expected = role == NodeRole.Server ? _options.Servers : _options.Workers;
        int registered = _nodes.Values.Count(n => n.Role == role);
        if (join)
        {
            OnJoin(connection, header, role, host, port, handlers, maxMemoryBytes, outbox);
            return;
        }
        if (registered >= expected)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict,
                $"the job already has its {expected} {role.ToString().ToLowerInvariant()}s; to add one to the running job start it with --join"));
            return;
        }
        var node = new NodeState(_nextNodeId++, role, registered, host, port, connection, handlers, NowMs)
        {
            MaxMemoryBytes = maxMemoryBytes,
            Points = role == NodeRole.Server ? _options.VirtualNodes : -1,
            TargetPoints = role == NodeRole.Server ? _options.VirtualNodes : -1,
        };
        _nodes[node.Id] = node;
        connection.Tag = node;
        connection.Peer = node.Info.Describe();
        _log.LogNodeRegistered(node.Info.Describe(), registered + 1, expected, role.ToString().ToLowerInvariant());
        outbox.Add(Reply(connection, header, ControlMessages.Ints(node.Id, node.Rank, (int)_options.HeartbeatInterval.TotalMilliseconds, 0)));
        AddRestoreFrame(node, outbox);
        if (!_ready && _nodes.Values.Count(n => n.Role == NodeRole.Server) == _options.Servers && _nodes.Values.Count(n => n.Role == NodeRole.Worker) == _options.Workers)
        {
            _ready = true;
            _log.LogAllRegistered(_options.Servers, _options.Workers);
        }
        Publish(outbox);
    }

    private void OnViewAck(Connection connection, in FrameHeader header, List<Outgoing> outbox)
    {
        if (connection.Tag is not NodeState node)
        {
            return;
        }
        node.AckedView = Math.Max(node.AckedView, (uint)header.RequestId);
        CompleteDeclares(outbox);
    }

    private void OnBarrier(Connection connection, in FrameHeader header, List<Outgoing> outbox)
    {
        if (connection.Tag is not NodeState { Role: NodeRole.Worker } node)
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, "only registered workers take part in barriers"));
            return;
        }
        // A worker's n-th barrier is the job's barrier BarrierBase + n: a worker that joined late lines up with the next one.
        _barriers.Arrive(node.Id, connection, header.RequestId, node.BarrierBase + Math.Max(1, header.Round));
        ReleaseBarrier(outbox);
    }

    private void ReleaseBarrier(List<Outgoing> outbox)
    {
        if (!_ready)
        {
            return;
        }
        var released = _barriers.Release(_nodes.Values.Where(n => n.Role == NodeRole.Worker && n.Alive && !n.Finished));
        foreach (var (connection, requestId, count) in released)
        {
            outbox.Add(Reply(connection, new FrameHeader { RequestId = requestId }, ControlMessages.Ints(count)));
        }
        if (released.Count > 0)
        {
            StateChanged();
        }
    }

    private void OnFinish(Connection connection, in FrameHeader header, List<Outgoing> outbox)
    {
        if (connection.Tag is NodeState { Role: NodeRole.Worker } node)
        {
            node.Finished = true;
            _log.LogNodeFinished(node.Info.Describe());
        }
        outbox.Add(Reply(connection, header, []));
        ReleaseBarrier(outbox);
        MaybeShutDown(outbox);
    }

    private void MaybeShutDown(List<Outgoing> outbox)
    {
        var workers = _nodes.Values.Where(n => n.Role == NodeRole.Worker).ToList();
        if (_shuttingDown || !_ready || workers.Any(w => w.Alive && !w.Finished))
        {
            return;
        }
        _shuttingDown = true;
        var failed = workers.Where(w => !w.Finished).ToList();
        int exitCode = failed.Count == 0 ? 0 : 1;
        if (failed.Count > 0)
        {
            _log.LogWorkersFailed(string.Join(", ", failed.Select(w => w.Info.Describe())));
        }
        else
        {
            _log.LogAllWorkersFinished();
        }
        if (_options.CheckpointDirectory is not null)
        {
            // The final checkpoint first: the servers still hold everything; then the shutdown.
            _ = Task.Run(async () =>
            {
                bool written = await TakeCheckpointAsync().ConfigureAwait(false);
                var later = new List<Outgoing>();
                lock (_lock)
                {
                    AddShutdownFrames(later);
                }
                Flush(later);
                await Task.Delay(300).ConfigureAwait(false);
                _completion.TrySetResult(written ? exitCode : Math.Max(exitCode, 1));
            });
            return;
        }
        AddShutdownFrames(outbox);
        _ = Task.Delay(300).ContinueWith(_ => _completion.TrySetResult(exitCode), TaskScheduler.Default);
    }

    private void AddShutdownFrames(List<Outgoing> outbox)
    {
        foreach (var n in _nodes.Values.Where(n => n.Alive))
        {
            outbox.Add(new Outgoing(n.Connection, new FrameHeader { Type = MessageType.Shutdown, SenderId = SchedulerId }, []));
        }
    }

    private void OnClosed(Connection connection, string reason)
    {
        if (connection.Tag is not NodeState node)
        {
            return;
        }
        var outbox = new List<Outgoing>();
        lock (_lock)
        {
            if (!node.Alive || Volatile.Read(ref _deposed) != 0)
            {
                return; // a deposed scheduler closing its connections declares nobody dead
            }
            MarkDead(node, node.Finished ? "left after finishing" : $"disconnected ({reason})", outbox);
        }
        Flush(outbox);
    }

    private string AdvertisedHost => _options.AdvertisedHost ?? _options.Host;

    private ClusterView BuildView()
    {
        var nodes = new List<NodeInfo> { new(SchedulerId, NodeRole.Scheduler, 0, AdvertisedHost, _listener.Port, true) };
        nodes.AddRange(_nodes.Values.OrderBy(n => n.Id).Select(n => n.Info));
        return new ClusterView(_viewNumber, _ready, _options.VirtualNodes, _options.Servers, _options.Workers, nodes, _tables.ToArray(), _options.EffectiveReplication);
    }

    /// <summary>Makes a new view and queues it for every live node; nodes acknowledge with the view number as request id.</summary>
    private void Publish(List<Outgoing> outbox)
    {
        _viewNumber++;
        _view = BuildView();
        var w = new PayloadWriter();
        _view.Write(w);
        byte[] payload = w.WrittenSpan.ToArray();
        foreach (var n in _nodes.Values.Where(n => n.Alive))
        {
            outbox.Add(new Outgoing(n.Connection, new FrameHeader { Type = MessageType.View, SenderId = SchedulerId, RequestId = _viewNumber }, payload));
        }
    }

    /// <summary>
    /// Milliseconds on the options' clock, monotonic (a TimeProvider's timestamps): what node silence, the rejoin window
    /// and the work queue's backups are measured in. Only differences of two of these values mean anything.
    /// </summary>
    private long NowMs => (long)_time.GetElapsedTime(0, _time.GetTimestamp()).TotalMilliseconds;

    private static long DeadlineAfter(TimeSpan timeout) => Environment.TickCount64 + (long)timeout.TotalMilliseconds;

    private static Outgoing Reply(Connection connection, in FrameHeader request, byte[] payload) =>
        new(connection, new FrameHeader { Type = MessageType.Response, SenderId = SchedulerId, RequestId = request.RequestId }, payload);

    private static Outgoing Error(Connection connection, in FrameHeader request, ErrorCode code, string message) =>
        new(connection, new FrameHeader { Type = MessageType.Response, SenderId = SchedulerId, RequestId = request.RequestId, Error = code }, Encoding.UTF8.GetBytes(message));

    private void Flush(List<Outgoing> outbox)
    {
        if (outbox.Count > 0 && !IsActive())
        {
            return; // deposed: not one more frame (fencing)
        }
        foreach (var o in outbox)
        {
            try
            {
                var header = o.Header;
                header.RowWidth = 1;
                header.ElementType = WireElementType.Float32;
                o.Connection?.Send(header, o.Payload);
            }
            catch (TransportException ex)
            {
                _log.LogSendFailed(o.Header.Type, o.Connection?.Peer, ex.Message);
            }
        }
    }

    /// <summary>
    /// Whether this scheduler may still act: with a shared store, only while it holds the leadership. A scheduler
    /// that lost it (frozen past its lease, cut off from etcd) stops at once, having sent nothing since.
    /// </summary>
    private bool IsActive()
    {
        if (_store is null || (_store.IsActive && Volatile.Read(ref _deposed) == 0))
        {
            return true;
        }
        Depose();
        return false;
    }

    /// <summary>Stops this scheduler for good, once: another one is (or may be) active.</summary>
    private void Depose()
    {
        if (Interlocked.Exchange(ref _deposed, 1) == 0)
        {
            _log.LogDeposed(_store!.Location);
            _ = Task.Run(async () =>
            {
                await DisposeAsync().ConfigureAwait(false);
                _completion.TrySetResult(ExitDeposed);
            });
        }
    }

    /// <summary>The exit code of a scheduler that lost its leadership to a standby.</summary>
    internal const int ExitDeposed = 4;

    private int _deposed;

    public ValueTask DisposeAsync()
    {
        _metrics?.Dispose();
        _stop.Cancel();
        _listener.Dispose();
        (_store as IDisposable)?.Dispose();
        List<NodeState> nodes;
        lock (_lock)
        {
            nodes = _nodes.Values.ToList();
        }
        foreach (var n in nodes)
        {
            n.Connection?.Close("scheduler stopped");
        }
        _completion.TrySetResult(_deposed != 0 ? ExitDeposed : 1);
        return ValueTask.CompletedTask;
    }
}
