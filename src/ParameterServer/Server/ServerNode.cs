using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Server.Checkpoints;
using ParameterServer.Server.Data;
using ParameterServer.Server.Migration;
using ParameterServer.Server.Store;
using ParameterServer.Server.Filters;
using ParameterServer.Server.Replication;
using ParameterServer.Server.Sessions;
using ParameterServer.Server.Sync;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// A server node: registers with the scheduler, follows its views, creates the declared tables and serves
/// push / pull requests from workers. Requests are handled inline on each connection's receive thread; the
/// stores lock per block, so there is no global lock on the data path. This class is the host: it wires the rooms
/// (store, data plane, sync rounds, replication, migration, checkpoints, pull filters, sessions) and dispatches
/// frames and views to them; each room owns its state (docs/ARCHITECTURE.md).
/// </summary>
public sealed class ServerNode : IAsyncDisposable
{
    private readonly LocalServer _self;
    private readonly Listener _listener;
    private readonly TaskCompletionSource<int> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _viewInstallLock = new();
    private readonly ViewGate _gate = new();
    private readonly TableSet _tables;
    private readonly Answers _answers;
    private readonly SessionRegistry _sessions;
    private readonly PeerLinks _links;
    private readonly ChainReplicator _replication;
    private readonly SyncRounds _sync;
    private readonly FilteredAnswers _filtered;
    private readonly DataRequests _data;
    private readonly VectorRequests _vectors;
    private readonly Refiller _refiller;
    private readonly ServerCheckpoints _checkpoints;
    private readonly NodeMetrics _metrics;
    private ControlChannel? _scheduler;

    private ServerNode(ServerOptions options, ILoggerFactory loggers)
    {
        options.Validate();
        _self = new LocalServer(options, loggers.CreateLogger("server"), () => _completion.Task.IsCompleted);
        _tables = new TableSet(_self, () => _gate.Current);
        _answers = new Answers(_self, _gate);
        _sessions = new SessionRegistry(_self);
        _links = new PeerLinks(_self, _gate);
        _replication = new ChainReplicator(_self, _gate, _answers, _tables, _links);
        _sync = new SyncRounds(_self, _gate, _answers, _tables, _replication);
        _filtered = new FilteredAnswers(_self, _answers);
        _data = new DataRequests(_self, _gate, _answers, _tables, _replication, _sync, _filtered);
        _vectors = new VectorRequests(_self, _gate, _answers, _tables);
        _refiller = new Refiller(_self, _gate, _tables, _links, view => ReportToScheduler(MessageType.RefillDone, [], view));
        _checkpoints = new ServerCheckpoints(_self, _gate, _tables, (epoch, result) => ReportToScheduler(MessageType.CheckpointDone, result, epoch));
        _listener = new Listener(options.Host, options.Port, stream =>
            new Connection(stream, new DataHandler(this), options.Transport, _self.Log, $"worker at {stream.RemoteAddress}", _self.Traffic), _self.Log, options.Transport);
        _metrics = new NodeMetrics("server", () => _self.Id, _self.Traffic, ReportMetric);
    }

    /// <summary>Starts listening, registers with the scheduler and returns once it has a node id.</summary>
    public static async Task<ServerNode> StartAsync(ServerOptions options, ILoggerFactory? loggers = null, CancellationToken cancellationToken = default)
    {
        var node = new ServerNode(options, loggers ?? NullLoggerFactory.Instance);
        try
        {
            await node.RegisterAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return node;
    }

    public int Id => _self.Id;

    /// <summary>The rows this server holds for a table (tests and tools).</summary>
    internal TableStore? TableStoreOf(int tableId) => _tables.Get(tableId);

    /// <summary>Frames and bytes in and out of this server, by message type and peer.</summary>
    internal TrafficMeter Traffic => _self.Traffic;

    public int Port => _listener.Port;

    /// <summary>Completes when the scheduler shuts the job down (0) or the scheduler is lost (1).</summary>
    public Task<int> Completion => _completion.Task;

    private ServerOptions Options => _self.Options;

    private ILogger Log => _self.Log;

    private async Task RegisterAsync(CancellationToken cancellationToken)
    {
        _scheduler = await ControlChannel.ConnectAsync(Options.Scheduler, Options.Transport.As(NodeRole.Server), Log, OnSchedulerFrame, OnSchedulerLost, _self.Traffic, Options.RegisterTimeout, cancellationToken).ConfigureAwait(false);
        var w = new PayloadWriter();
        ControlMessages.WriteRegister(w, NodeRole.Server, Options.AdvertisedHost ?? Options.Host, Port, Options.HandlerNames, Options.Join, Options.MaxMemoryBytes, Options.JobId);
        var reply = await _scheduler.CallAsync(MessageType.Register, w.WrittenSpan.ToArray(), "the registration of this server", Options.RegisterTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        int[] fields = ControlMessages.ReadInts(reply.Payload, 3);
        _self.Id = fields[0];
        _scheduler.SenderId = Id;
        _scheduler.Lease = _self.Lease;
        _scheduler.EnableReconnect(ControlChannel.ReconnectWindow, () => ControlMessages.Ints(Id, (int)NodeRole.Server));
        var heartbeat = TimeSpan.FromMilliseconds(fields[2]);
        Log.LogListening(Id, Options.AdvertisedHost ?? Options.Host, Port);
        _scheduler.StartHeartbeats(heartbeat, () => _completion.Task.IsCompleted);
    }

    /// <summary>A room's report to the scheduler (refill done, checkpoint written); throws PsException when it is unreachable.</summary>
    private void ReportToScheduler(MessageType type, byte[] payload, long round) => _scheduler?.Send(type, payload, round: round);

    private void OnSchedulerFrame(FrameHeader header, byte[] payload)
    {
        switch (header.Type)
        {
            case MessageType.View:
                try
                {
                    ApplyView(ClusterView.Read(payload));
                }
                catch (PsException ex)
                {
                    Log.LogViewRejected(Id, ex.Message);
                    _completion.TrySetResult(2); // a checkpoint it was asked to restore is unreadable: do not serve without it
                    return;
                }
                _scheduler?.Reply(header, []);
                break;
            case MessageType.Checkpoint:
                _checkpoints.OnCheckpointRequest(header.Round, Encoding.UTF8.GetString(payload));
                break;
            case MessageType.Restore:
                _checkpoints.RestoreFrom(Encoding.UTF8.GetString(payload));
                break;
            case MessageType.Shutdown:
                Log.LogJobEnded(Id);
                _completion.TrySetResult(0);
                _scheduler?.Dispose(); // no reconnecting to a scheduler that is going away
                break;
        }
    }

    private void OnSchedulerLost(string reason)
    {
        if (!_completion.Task.IsCompleted)
        {
            Log.LogSchedulerLost(Id, Options.Scheduler, reason);
            _completion.TrySetResult(1);
        }
    }

    /// <summary>
    /// Installs a view: tables it declares are created, then, with no push half applied (large streamed ones finish
    /// first, the others hold the gate's read side), the view becomes current together with the sync participants and
    /// the sync pushes whose keys moved away are taken out of their rounds. Then: restore, refill of new copies, drop of
    /// moved blocks, rounds that waited for departed workers.
    /// </summary>
    private void ApplyView(ClusterView view)
    {
        _links.CloseDeclaredDead(view); // before the install, which waits for forwards that may be stuck on a hung peer
        lock (_viewInstallLock)
        {
            var tables = _tables.CreateDeclared(view);
            var previous = _gate.Current;
            bool paused = true;
            try
            {
                _gate.PauseStreamedApplies();
            }
            catch (IOException ex)
            {
                paused = false;
                Log.LogViewInstalledWithoutDrain(Id, view.Number, ex.Message);
            }
            _gate.Remember(view); // before a push cut by it can arrive
            var participants = new SyncAggregator.Participants(view.Workers.Select(w => w.Id).ToArray(), view.Nodes.Any(n => n.Id == Id && n.Joined));
            bool newer = previous is not null && previous.Number < view.Number;
            List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? refused = null;
            _gate.EnterExclusive();
            try
            {
                _gate.Install(view);
                _sync.SetParticipants(participants);
                if (newer)
                {
                    // With the view, not after it: a round completing in between would apply moved keys here.
                    refused = _sync.TakeMovedSyncPushes(view, tables, participants);
                }
            }
            finally
            {
                _gate.ExitExclusive();
                if (paused)
                {
                    _gate.ResumeStreamedApplies();
                }
            }
            _sync.RefuseMovedSyncPushes(view, refused);
            _checkpoints.RestoreIfAsked(view);
            if (previous is not null && newer)
            {
                _refiller.StartRefill(previous, view);
                if (previous.InTransition && !view.InTransition)
                {
                    _refiller.DropMovedBlocks(view, tables);
                }
            }
            if (previous is not null && !previous.Workers.Select(w => w.Id).SequenceEqual(view.Workers.Select(w => w.Id)))
            {
                _sync.OnLiveWorkersChanged(tables, participants);
            }
        }
    }

    /// <summary>Frames from workers and peer servers, dispatched to the rooms on the connection's receive thread.</summary>
    private sealed class DataHandler(ServerNode server) : IFrameHandler
    {
        private readonly ChunkedPush _chunks = new(server._data, server._gate, server._answers);
        private readonly CutThroughPush _cutThrough = new(server._data, server._replication, server.Id);
        private readonly ReplicaAssembly _assembly = new(server._replication, server._answers, server.Id);
        private bool _streaming; // the chunked frame under way is a replicated push passed on as it arrives

        public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
        {
            if (header.Type == MessageType.ReplicatePart && Accepts(connection, header))
            {
                _assembly.OnPart(connection, header, payload);
                return;
            }
            server.OnDataFrame(connection, header, payload); // refusals included
        }

        public bool TryBeginChunks(Connection connection, in FrameHeader header, ReadOnlySpan<byte> first)
        {
            if (!Accepts(connection, header))
            {
                return false; // a refusal is answered whole
            }
            if (_chunks.TryBegin(connection, header, first))
            {
                _streaming = false;
                return true;
            }
            _streaming = _cutThrough.TryBegin(connection, header, first);
            return _streaming;
        }

        public void OnChunk(Connection connection, in FrameHeader header, ReadOnlySpan<byte> chunk)
        {
            if (_streaming)
            {
                _cutThrough.Add(chunk);
            }
            else
            {
                _chunks.Add(chunk);
            }
        }

        public void EndChunks(Connection connection, in FrameHeader header, bool received)
        {
            if (_streaming)
            {
                _cutThrough.End(connection, header, received);
            }
            else
            {
                _chunks.End(connection, header, received);
            }
        }

        public bool TryBeginDirect(Connection connection, in FrameHeader header, out Span<byte> target)
        {
            target = default;
            return header.Type == MessageType.ReplicatePart && Accepts(connection, header) && _assembly.TryBeginDirect(connection, header, out target);
        }

        public void EndDirect(Connection connection, in FrameHeader header, bool received) => _assembly.EndDirect(connection, header, received);

        private static bool Accepts(Connection connection, in FrameHeader header) =>
            connection.AuthenticatedRole is not { } role || RolePolicy.ServerAccepts(role, header.Type);

        public void OnClosed(Connection connection, string reason)
        {
            server._links.ForgetInbound(connection);
            server._sessions.Close(connection);
            _assembly.Clear();
            server.Log.LogPeerDisconnected(server.Id, connection.Peer, reason);
        }
    }

    private void OnDataFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        _data.CountRequest();
        if (connection.AuthenticatedRole is { } role && !RolePolicy.ServerAccepts(role, header.Type))
        {
            _answers.SendError(connection, header, ErrorCode.Forbidden, RolePolicy.Refusal($"server {Id}", role, header.Type, connection.Peer));
            return;
        }
        var session = _sessions.Of(connection, header, _gate.Current);
        switch (header.Type)
        {
            case MessageType.Push:
            case MessageType.Pull:
            case MessageType.PushPull:
                if ((header.Flags & FrameFlags.RoundsFrom) != 0)
                {
                    _sync.HandleRoundsFrom(header);
                    break;
                }
                using (PsTracing.StartRequest(header))
                {
                    if ((header.Flags & FrameFlags.Encoded) != 0)
                    {
                        _data.HandleEncoded(connection, header, payload, session.Keys);
                    }
                    else
                    {
                        _data.HandleData(connection, header, payload);
                    }
                }
                break;
            case MessageType.Replicate:
                if ((header.Flags & FrameFlags.Encoded) != 0)
                {
                    _replication.HandleEncodedReplicate(connection, header, payload, session.Keys);
                    break;
                }
                _replication.HandleReplicate(connection, header, payload);
                break;
            case MessageType.Refill:
                _refiller.HandleRefill(header, payload);
                break;
            case MessageType.Scan:
                _data.HandleScan(connection, header);
                break;
            case MessageType.VectorOps:
                _vectors.Handle(connection, header, payload);
                break;
            case MessageType.ServerStats:
                var stats = Encoding.UTF8.GetBytes(StatsJson());
                connection.Send(new FrameHeader { Type = MessageType.Response, SenderId = Id, RequestId = header.RequestId, RowWidth = 1, ElementType = WireElementType.Float32 }, stats);
                break;
            case MessageType.Heartbeat:
                break;
            default:
                _answers.SendError(connection, header, ErrorCode.UnsupportedMessage, $"server {Id} does not handle {header.Type} frames");
                break;
        }
    }

    /// <summary>Per table counters as one JSON object: what `pserver server` prints when the job ends, and what ServerStats returns.</summary>
    public string StatsJson()
    {
        var tables = _tables.All.Where(t => t is not null).Select(t =>
        {
            var (keys, bytes) = t!.Usage();
            return new Dictionary<string, object>
            {
                ["table"] = t.Info.Name,
                ["keys"] = keys,
                ["bytes"] = bytes,
                ["mode"] = t.Info.Mode.ToString().ToLowerInvariant(),
                ["rounds_applied"] = t.Aggregator?.RoundsApplied ?? 0,
                ["max_lead"] = t.Aggregator?.MaxLead ?? 0,
            };
        }).ToArray();
        var traffic = _self.Traffic.Snapshot();
        return JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["server"] = _self.Id,
            ["requests"] = _data.Requests,
            ["replicated"] = _replication.Replicated,
            ["replicated_streamed"] = _replication.Streamed,
            ["resend_rows_skipped"] = _replication.ResendRowsSkipped,
            ["refill_blocks_sent"] = _refiller.BlocksSent,
            ["refill_blocks_received"] = _refiller.BlocksReceived,
            ["bytes_sent"] = traffic.BytesSent,
            ["bytes_received"] = traffic.BytesReceived,
            ["traffic"] = traffic.ToJson(),
            ["key_cache"] = _sessions.KeyCacheJson(),
            ["pull_filter"] = new Dictionary<string, long> { ["rows"] = _filtered.Counts.Rows, ["rows_left_out"] = _filtered.Counts.LeftOut },
            ["tables"] = tables,
            ["process"] = new Dictionary<string, long>
            {
                ["rss_bytes"] = Environment.WorkingSet,
                ["peak_rss_bytes"] = PeakResidentBytes(),
                ["managed_heap_bytes"] = GC.GetTotalMemory(forceFullCollection: false),
                ["native_table_bytes"] = SparseRowStore.NativeBytes,
            },
        });
    }

    /// <summary>The most memory this process has held resident (VmHWM on Linux; elsewhere the current figure).</summary>
    private static long PeakResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        return Environment.WorkingSet;
    }

    /// <summary>This server's values of the <see cref="PsMetrics"/> instruments of its role, read when a collector asks.</summary>
    private void ReportMetric(string instrument, Action<long, KeyValuePair<string, object?>[]> emit)
    {
        switch (instrument)
        {
            case "ps.server.requests":
                emit(_data.Requests, []);
                break;
            case "ps.server.replicated":
                emit(_replication.Replicated, []);
                break;
            case "ps.server.refill.blocks":
                emit(_refiller.BlocksSent, [new("direction", "sent")]);
                emit(_refiller.BlocksReceived, [new("direction", "received")]);
                break;
            case "ps.server.table.keys" or "ps.server.table.memory":
                foreach (var table in _tables.All)
                {
                    if (table is not null)
                    {
                        var (keys, bytes) = table.Usage();
                        emit(instrument == "ps.server.table.keys" ? keys : bytes, [new("table", table.Info.Name)]);
                    }
                }
                break;
            case "ps.server.key_cache.lookups":
                var cache = _sessions.KeyCacheJson();
                emit(cache["hits"], [new("result", "hit")]);
                emit(cache["misses"], [new("result", "miss")]);
                break;
            case "ps.server.pull_filter.rows":
                var (rows, leftOut) = _filtered.Counts;
                emit(rows - leftOut, [new("outcome", "sent")]);
                emit(leftOut, [new("outcome", "left_out")]);
                break;
        }
    }

    /// <summary>The newest view this server installed (tests).</summary>
    internal ClusterView? View => _gate.Current;

    public ValueTask DisposeAsync()
    {
        _metrics.Dispose();
        _listener.Dispose();
        _scheduler?.Dispose();
        _links.ClosePeers();
        _completion.TrySetResult(1);
        return ValueTask.CompletedTask;
    }
}
