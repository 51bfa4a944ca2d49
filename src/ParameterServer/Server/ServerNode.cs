using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Core.Codecs;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// A server node: registers with the scheduler, follows its views, creates the declared tables and serves
/// push / pull requests from workers. Requests are handled inline on each connection's receive thread; the
/// stores lock per block, so there is no global lock on the data path.
/// </summary>
public sealed partial class ServerNode : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private readonly ILogger _log;
    private readonly Listener _listener;

    /// <summary>Frames and bytes in and out of this server, by message type and peer.</summary>
    internal TrafficMeter Traffic { get; } = new();
    private readonly TaskCompletionSource<int> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _tablesLock = new();
    private readonly Dictionary<int, string> _tableErrors = new();
    private ControlChannel? _scheduler;
    private volatile ClusterView? _view;
    private volatile TableStore?[] _tables = [];
    private readonly List<Connection> _connections = new();
    private long _requests;

    private ServerNode(ServerOptions options, ILoggerFactory loggers)
    {
        options.Validate();
        _options = options;
        _log = loggers.CreateLogger("server");
        _listener = new Listener(options.Host, options.Port, socket =>
        {
            var connection = new Connection(socket, new DataHandler(this), options.Transport, _log, $"worker at {socket.RemoteEndPoint}", Traffic);
            lock (_connections)
            {
                _connections.Add(connection);
            }
            return connection;
        }, _log);
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

    public int Id { get; private set; } = -1;

    /// <summary>The rows this server holds for a table (tests and tools).</summary>
    internal TableStore? TableStoreOf(int tableId) => (uint)tableId < (uint)_tables.Length ? _tables[tableId] : null;

    public int Port => _listener.Port;

    /// <summary>Completes when the scheduler shuts the job down (0) or the scheduler is lost (1).</summary>
    public Task<int> Completion => _completion.Task;

    private async Task RegisterAsync(CancellationToken cancellationToken)
    {
        _scheduler = ControlChannel.Connect(_options.Scheduler, _options.Transport, _log, OnSchedulerFrame, OnSchedulerLost, Traffic);
        var w = new PayloadWriter();
        ControlMessages.WriteRegister(w, NodeRole.Server, _options.AdvertisedHost ?? _options.Host, Port, _options.HandlerNames, _options.Join);
        var reply = await _scheduler.CallAsync(MessageType.Register, w.WrittenSpan.ToArray(), "the registration of this server", _options.RegisterTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        int[] fields = ControlMessages.ReadInts(reply.Payload, 3);
        Id = fields[0];
        _scheduler.SenderId = Id;
        _scheduler.EnableReconnect(ControlChannel.ReconnectWindow, () => ControlMessages.Ints(Id, (int)NodeRole.Server));
        var heartbeat = TimeSpan.FromMilliseconds(fields[2]);
        _log.LogInformation("Server {Id} listening on {Host}:{Port}", Id, _options.AdvertisedHost ?? _options.Host, Port);
        _scheduler.StartHeartbeats(heartbeat, () => _completion.Task.IsCompleted);
    }

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
                    _log.LogError("Server {Id}: {Message}", Id, ex.Message);
                    _completion.TrySetResult(2); // a checkpoint it was asked to restore is unreadable: do not serve without it
                    return;
                }
                _scheduler?.Reply(header, []);
                break;
            case MessageType.Checkpoint:
                OnCheckpointRequest(header.Round, Utf8(payload));
                break;
            case MessageType.Restore:
                _restoreFolder = Utf8(payload);
                break;
            case MessageType.Shutdown:
                _log.LogInformation("Server {Id}: the scheduler ends the job", Id);
                _completion.TrySetResult(0);
                _scheduler?.Dispose(); // no reconnecting to a scheduler that is going away
                break;
        }
    }

    private void OnSchedulerLost(string reason)
    {
        if (!_completion.Task.IsCompleted)
        {
            _log.LogError("Server {Id} lost the scheduler at {Address}: {Reason}", Id, _options.Scheduler, reason);
            _completion.TrySetResult(1);
        }
    }

    private void ApplyView(ClusterView view)
    {
        lock (_tablesLock)
        {
            var tables = _tables;
            int maxId = view.Tables.Count == 0 ? -1 : view.Tables.Max(t => t.Id);
            if (maxId >= tables.Length)
            {
                Array.Resize(ref tables, maxId + 1);
            }
            foreach (var info in view.Tables)
            {
                if (tables[info.Id] is null && !_tableErrors.ContainsKey(info.Id))
                {
                    try
                    {
                        tables[info.Id] = new TableStore(info, _options.CreateHandler(info.Handler)) { PullFilter = _options.CreatePullFilter(info.PullFilter) };
                        _log.LogInformation("Server {Id}: created table {Table}", Id, info.Describe());
                    }
                    catch (ArgumentException ex)
                    {
                        _tableErrors[info.Id] = ex.Message;
                        _log.LogError("Server {Id}: cannot create table {Table}: {Message}", Id, info.Describe(), ex.Message);
                    }
                }
            }
            _tables = tables;
            var previous = _view;
            // No push is half applied under the old view (see HandleData): large ones streamed piece by piece finish
            // first, the others hold the lock's read side.
            bool paused = true;
            try
            {
                PauseStreamedApplies();
            }
            catch (IOException ex)
            {
                paused = false;
                _log.LogWarning("Server {Id}: installing view {View} without waiting for a large push: {Message}", Id, view.Number, ex.Message);
            }
            RememberView(view); // before a push cut by it can arrive
            var participants = new SyncAggregator.Participants(view.Workers.Select(w => w.Id).ToArray(), view.Nodes.Any(n => n.Id == Id && n.Joined));
            bool newer = previous is not null && previous.Number < view.Number;
            List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? refused = null;
            _forwardOrder.EnterWriteLock();
            try
            {
                _view = view;
                _participants = participants;
                if (newer)
                {
                    // With the view, not after it: a round completing in between would apply moved keys here.
                    refused = TakeMovedSyncPushes(view, tables, participants);
                }
            }
            finally
            {
                _forwardOrder.ExitWriteLock();
                if (paused)
                {
                    ResumeStreamedApplies();
                }
            }
            RefuseMovedSyncPushes(view, refused);
            RestoreIfAsked(view);
            if (previous is not null && newer)
            {
                StartRefill(previous, view);
                if (previous.InTransition && !view.InTransition)
                {
                    DropMovedBlocks(view, tables);
                }
            }
            if (previous is not null && !previous.Workers.Select(w => w.Id).SequenceEqual(view.Workers.Select(w => w.Id)))
            {
                foreach (var t in tables)
                {
                    _forwardOrder.EnterReadLock();
                    try
                    {
                        if (t?.Aggregator?.OnLiveWorkersChanged(participants) is { } rounds)
                        {
                            FinishRounds(t, rounds, lockHeld: true);
                        }
                    }
                    finally
                    {
                        _forwardOrder.ExitReadLock();
                    }
                }
            }
        }
    }

    private sealed class DataHandler(ServerNode server) : IFrameHandler
    {
        private readonly ChunkedPush _chunks = new(server);

        public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload) => server.OnDataFrame(connection, header, payload);

        public bool TryBeginChunks(Connection connection, in FrameHeader header, ReadOnlySpan<byte> first) => _chunks.TryBegin(connection, header, first);

        public void OnChunk(Connection connection, in FrameHeader header, ReadOnlySpan<byte> chunk) => _chunks.Add(chunk);

        public void EndChunks(Connection connection, in FrameHeader header, bool received) => _chunks.End(connection, header, received);

        public void OnClosed(Connection connection, string reason)
        {
            server._inboundPeers.TryRemove(connection, out _);
            if (connection.Tag is PeerState state)
            {
                server.RetireKeyCache(state.Keys);
            }
            server._log.LogDebug("Server {Id}: {Peer} disconnected: {Reason}", server.Id, connection.Peer, reason);
        }
    }

    private volatile SyncAggregator.Participants _participants = new([], false);

    /// <summary>
    /// After a migration switched owners, forgets the blocks this server no longer holds (chains only lose members
    /// when ranges move, never when a server dies). Under the write side of the forward lock: no push is applied meanwhile.
    /// </summary>
    private void DropMovedBlocks(ClusterView view, TableStore?[] tables)
    {
        int mySlot = view.SlotOfServer(Id);
        if (mySlot < 0)
        {
            return;
        }
        long dropped = 0;
        _forwardOrder.EnterWriteLock();
        try
        {
            foreach (var table in tables)
            {
                if (table is null || view.FindTable(table.Info.Id) is null)
                {
                    continue;
                }
                var placement = view.PlacementOf(table.Info);
                Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
                foreach (long block in table.StoredBlocks())
                {
                    int n = placement.ChainOfBlock(block, chain);
                    if (!chain[..n].Contains(mySlot))
                    {
                        table.DropBlock(block);
                        dropped++;
                    }
                }
            }
        }
        finally
        {
            _forwardOrder.ExitWriteLock();
        }
        if (dropped > 0)
        {
            _log.LogInformation("Server {Id}: dropped {Blocks} blocks that moved to other servers in view {View}", Id, dropped, view.Number);
        }
    }

    /// <summary>
    /// Under a view where this server no longer owns some keys, the pushes of open sync rounds that hold such keys are
    /// taken out of their rounds (under the forward lock's write side, with the view's installation); they are then
    /// refused (WrongOwner): nothing of them was applied, and their workers send them again to the new owners.
    /// </summary>
    private List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? TakeMovedSyncPushes(ClusterView view, TableStore?[] tables, SyncAggregator.Participants participants)
    {
        int mySlot = view.SlotOfServer(Id);
        List<(TableStore, List<SyncAggregator.PendingAck>)>? refused = null;
        foreach (var table in tables)
        {
            if (table?.Aggregator is not { } aggregator || view.FindTable(table.Info.Id) is null)
            {
                continue;
            }
            var placement = view.PlacementOf(table.Info);
            var acks = aggregator.TakeMoved(key => mySlot >= 0 && placement.SlotOf(key) == mySlot, participants, out var rounds);
            if (rounds is not null)
            {
                FinishRounds(table, rounds, lockHeld: true);
            }
            if (acks.Count > 0)
            {
                (refused ??= new()).Add((table, acks));
            }
        }
        return refused;
    }

    private void RefuseMovedSyncPushes(ClusterView view, List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? refused)
    {
        foreach (var (table, acks) in refused ?? [])
        {
            foreach (var ack in acks)
            {
                try
                {
                    SendError(ack.Connection, ack.Request, ErrorCode.WrongOwner, $"server {Id} handed keys of this push over to their new owner under view {view.Number}; send it there");
                }
                catch (TransportException)
                {
                }
            }
            _log.LogInformation("Server {Id}: {Count} pushes of open rounds of table '{Table}' hold keys that moved; refused, to be sent to their new owners", Id, acks.Count, table.Info.Name);
        }
    }

    private void OnDataFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        Interlocked.Increment(ref _requests);
        if (connection.Tag is not PeerState state)
        {
            // Name the peer by its node id once it says it (traffic by peer, log lines).
            int sender = header.SenderId;
            connection.Tag = state = new PeerState(sender, new ReceiverKeyCache(_options.KeyCacheBytes));
            var peer = _view?.Nodes.FirstOrDefault(n => n.Id == sender);
            connection.Peer = peer is not null ? $"{peer.Role.ToString().ToLowerInvariant()} {peer.Id}" : $"node {sender}";
            lock (_keyCaches)
            {
                _keyCaches.Add(state.Keys);
            }
        }
        switch (header.Type)
        {
            case MessageType.Push:
            case MessageType.Pull:
            case MessageType.PushPull:
                if ((header.Flags & FrameFlags.RoundsFrom) != 0)
                {
                    HandleRoundsFrom(header);
                    break;
                }
                if ((header.Flags & FrameFlags.Encoded) != 0)
                {
                    HandleEncoded(connection, header, payload, state.Keys);
                    break;
                }
                HandleData(connection, header, payload);
                break;
            case MessageType.Replicate:
                if ((header.Flags & FrameFlags.Encoded) != 0)
                {
                    HandleEncodedReplicate(connection, header, payload, state.Keys);
                    break;
                }
                HandleReplicate(connection, header, payload);
                break;
            case MessageType.Refill:
                HandleRefill(header, payload);
                break;
            case MessageType.Scan:
                HandleScan(connection, header);
                break;
            case MessageType.ServerStats:
                var stats = Encoding.UTF8.GetBytes(StatsJson());
                connection.Send(new FrameHeader { Type = MessageType.Response, SenderId = Id, RequestId = header.RequestId, RowWidth = 1, ElementType = WireElementType.Float32 }, stats);
                break;
            case MessageType.Heartbeat:
                break;
            default:
                SendError(connection, header, ErrorCode.UnsupportedMessage, $"server {Id} does not handle {header.Type} frames");
                break;
        }
    }

    /// <summary>
    /// Checks a data request against the view and the table (the payload needs only its key section). Returns what is
    /// wrong, or null with the view, table and keys to serve it.
    /// </summary>
    private (ErrorCode Code, string Message)? Check(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, out ClusterView view, out TableStore table, out KeyList keys)
    {
        table = TableOf(header, out view)!;
        keys = default;
        if (view is null || table is null)
        {
            string why = _tableErrors.TryGetValue(header.TableId, out var error) ? error : "declare it first (PsClient.DeclareTableAsync)";
            return (ErrorCode.UnknownTable, $"server {Id} has no table {header.TableId}: {why}");
        }
        if (header.RowWidth != table.Width)
        {
            return (ErrorCode.WrongWidth, $"table '{table.Info.Name}' has rows of width {table.Width}, the request has width {header.RowWidth}");
        }
        if (header.ElementType != table.Info.ElementType)
        {
            return (ErrorCode.WrongElementType, $"table '{table.Info.Name}' holds {table.Info.ElementType}, the request carries {header.ElementType}");
        }
        if (DataPayload.Validate(header) is { } malformed)
        {
            return (ErrorCode.MalformedPayload, malformed);
        }
        keys = DataPayload.Keys(header, payload);
        int unsorted = keys.FindUnsorted();
        if (unsorted >= 0)
        {
            return (ErrorCode.KeysNotSorted, $"keys must be sorted ascending without duplicates: key[{unsorted}] = {keys[unsorted]} follows {keys[unsorted - 1]}");
        }
        if (table.Info.IsDense && keys.Count > 0 && keys[keys.Count - 1] >= table.Info.DenseSize)
        {
            return (ErrorCode.KeyOutOfRange, $"key {keys[keys.Count - 1]} is outside dense table '{table.Info.Name}' of size {table.Info.DenseSize}");
        }
        if (OwnerProblem(view, table, keys) is { } notMine)
        {
            return notMine;
        }
        long answerLength = FrameHeader.Size + (header.Type == MessageType.Push ? 0 : (long)keys.Count * table.Width * sizeof(float))
            + ((header.Flags & FrameFlags.FilterAnswer) != 0 ? 8 + ((keys.Count + 63L) / 64 * 8) : 0); // a filtered answer's mask
        if (answerLength > connection.MaxFrameBytes)
        {
            return (ErrorCode.InvalidArgument, $"the answer would be {answerLength} bytes, over MaxFrameBytes ({connection.MaxFrameBytes}); pull fewer keys per call");
        }
        return null;
    }

    /// <summary>The table a request names, waiting (up to 5 s) for the view it was cut by if this server just joined and lacks the table.</summary>
    private TableStore? TableOf(in FrameHeader header, out ClusterView view)
    {
        view = _view!;
        var tables = _tables;
        var table = (uint)header.TableId < (uint)tables.Length ? tables[header.TableId] : null;
        if (table is null && header.ViewNumber > (view?.Number ?? 0))
        {
            long deadline = Environment.TickCount64 + 5000;
            while ((_view?.Number ?? 0) < header.ViewNumber && Environment.TickCount64 < deadline && !_completion.Task.IsCompleted)
            {
                Thread.Sleep(1);
            }
            view = _view!;
            tables = _tables;
            table = (uint)header.TableId < (uint)tables.Length ? tables[header.TableId] : null;
        }
        return table;
    }

    /// <summary>A worker's note that its sync rounds below header.Round were cut without this server (no answer).</summary>
    private void HandleRoundsFrom(in FrameHeader header)
    {
        var table = TableOf(header, out _);
        if (table?.Aggregator is not { } aggregator)
        {
            _log.LogDebug("Server {Id}: a rounds marker from node {Sender} names table {Table}, which is not a sync table here", Id, header.SenderId, header.TableId);
            return;
        }
        _forwardOrder.EnterReadLock();
        try
        {
            if (aggregator.NoteRoundsFrom(header.SenderId, header.Round, _participants) is { } rounds)
            {
                FinishRounds(table, rounds, lockHeld: true);
            }
        }
        finally
        {
            _forwardOrder.ExitReadLock();
        }
    }

    /// <summary>WrongOwner when this server is not the primary of every key under <paramref name="view"/>.</summary>
    private (ErrorCode Code, string Message)? OwnerProblem(ClusterView view, TableStore table, KeyList keys)
    {
        var placement = view.PlacementOf(table.Info);
        int mySlot = view.SlotOfServer(Id);
        for (int i = 0; i < keys.Count; i++)
        {
            if (placement.SlotOf(keys[i]) != mySlot)
            {
                int owner = view.Servers[placement.SlotOf(keys[i])].Id;
                return (ErrorCode.WrongOwner, $"key {keys[i]} of table '{table.Info.Name}' belongs to server {owner} under view {view.Number}, not server {Id}");
            }
        }
        return null;
    }

    /// <summary>What a server knows about the node on the other end of a connection.</summary>
    private sealed record PeerState(int NodeId, ReceiverKeyCache Keys)
    {
        /// <summary>Per table, the rows last sent on this connection in filtered pull answers.</summary>
        public Dictionary<int, RowMemory> PulledRows { get; } = new();
    }

    private readonly List<ReceiverKeyCache> _keyCaches = new();

    /// <summary>Decodes a frame with cached keys or encoded values, then serves it as the plain frame it stands for.</summary>
    private void HandleEncoded(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache keys)
    {
        switch (WireEncoding.Decode(header, payload, keys, connection.MaxFrameBytes, out var plainHeader, out var plain, out string? problem))
        {
            case WireEncoding.DecodeResult.Miss:
                SendError(connection, header, ErrorCode.KeyCacheMiss, $"server {Id} holds no key list with this signature from {connection.Peer} (evicted or never sent): send the keys");
                return;
            case WireEncoding.DecodeResult.Malformed:
                SendError(connection, header, ErrorCode.MalformedPayload, problem!);
                return;
        }
        // Forwards to replicas made while serving it are encoded alike (losslessly: see ForwardCodec).
        t_forwardCodec = ForwardCodec(header, payload);
        try
        {
            HandleData(connection, plainHeader, plain.AsSpan(FrameHeader.Size, plainHeader.PayloadLength));
        }
        finally
        {
            t_forwardCodec = null;
            ArrayPool<byte>.Shared.Return(plain!);
        }
    }

    private void HandleData(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (Check(connection, header, payload, out var view, out var table, out var keys) is { } problem)
        {
            SendError(connection, header, problem.Code, problem.Message);
            return;
        }
        var values = MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload));
        if (header.Type == MessageType.Pull)
        {
            if ((header.Flags & FrameFlags.FilterAnswer) != 0 && table.PullFilter is { } filter && connection.Tag is PeerState peer)
            {
                SendFilteredValues(connection, header, table, keys, filter, peer);
            }
            else
            {
                SendValues(connection, header, table, keys);
            }
            return;
        }
        if (table.Aggregator is { } aggregator && (header.Flags & FrameFlags.Resend) != 0)
        {
            HandleSyncResend(connection, header, view, table, aggregator, keys, values);
            return;
        }
        bool late = false;
        bool deferred = false;
        (ErrorCode Code, string Message)? moved = null;
        // Applying (and forwarding) happens under the newest view: views are installed under the write side of this
        // lock, so a push checked under an older view is checked again here. Otherwise a server could apply a push to
        // keys that moved away (or not forward it to a copy a migration just added) after the switch, and lose it.
        _forwardOrder.EnterReadLock();
        try
        {
            var current = _view!;
            if (current != view && OwnerProblem(current, table, keys) is { } notMine)
            {
                moved = notMine;
            }
            else if (table.Aggregator is { } sync)
            {
                // A round completing here is applied and forwarded here, under the view it was checked by.
                if (sync.Add(connection, header, keys, values, _participants, out late) is { } rounds)
                {
                    FinishRounds(table, rounds, lockHeld: true);
                }
                if (late)
                {
                    // Its round was applied here already (the push was refused by a server that handed its keys
                    // over and sent again): applied on its own, still under this view.
                    if (current.ChainLength > 1)
                    {
                        deferred = ApplyAndForward(connection, header, table, keys, values);
                    }
                    else
                    {
                        table.Apply(keys, values);
                    }
                }
            }
            else if (current.ChainLength > 1)
            {
                deferred = ApplyAndForward(connection, header, table, keys, values);
            }
            else
            {
                table.Apply(keys, values);
            }
        }
        finally
        {
            _forwardOrder.ExitReadLock();
        }
        if (moved is { } refusal)
        {
            SendError(connection, header, refusal.Code, refusal.Message);
            return;
        }
        if (table.Aggregator is not null && !late)
        {
            return; // acknowledged with its round
        }
        if (deferred)
        {
            return; // acknowledged when the replicas have it
        }
        if (header.Type == MessageType.PushPull)
        {
            SendValues(connection, header, table, keys);
        }
        else
        {
            SendAck(connection, header);
        }
    }

    private void HandleScan(Connection connection, in FrameHeader header)
    {
        var tables = _tables;
        var table = (uint)header.TableId < (uint)tables.Length ? tables[header.TableId] : null;
        if (table is null)
        {
            SendError(connection, header, ErrorCode.UnknownTable, $"server {Id} has no table {header.TableId}");
            return;
        }
        int rowBytes = sizeof(ulong) + table.Width * sizeof(float);
        int maxRows = (int)Math.Clamp((Math.Min(connection.MaxFrameBytes, 64 << 20) - FrameHeader.Size) / rowBytes, 1, 1 << 22);
        var keys = new List<ulong>();
        var values = new List<float>();
        // Only the blocks this server is primary for: replicas would list every row once per copy, and a server
        // keeps the rows of blocks that moved away from it.
        var view = _view;
        Func<long, bool>? primary = null;
        if (view is not null && !view.Ring.IsEmpty)
        {
            var placement = view.PlacementOf(table.Info);
            int mySlot = view.SlotOfServer(Id);
            primary = block => placement.SlotOfBlock(block) == mySlot;
        }
        var (rows, next) = table.Scan(Math.Max(0, header.Round), maxRows, keys, values, primary);
        if ((long)rows * rowBytes + FrameHeader.Size > connection.MaxFrameBytes)
        {
            SendError(connection, header, ErrorCode.InvalidArgument, $"one block of table '{table.Info.Name}' holds {rows} rows, more than a frame can carry (MaxFrameBytes {connection.MaxFrameBytes})");
            return;
        }
        var response = ResponseTo(header);
        response.KeyCount = rows;
        response.RowWidth = table.Width;
        response.Round = next;
        var payload = new byte[(long)rows * rowBytes];
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(keys)).CopyTo(payload);
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(values)).CopyTo(payload.AsSpan(rows * sizeof(ulong)));
        connection.Send(response, payload);
    }

    private void SendAcks(TableStore table, List<SyncAggregator.PendingAck> acks)
    {
        foreach (var ack in acks)
        {
            try
            {
                if (ack.Keys is not null)
                {
                    SendValues(ack.Connection, ack.Request, table, KeyList.Of(ack.Keys));
                }
                else
                {
                    SendAck(ack.Connection, ack.Request);
                }
            }
            catch (TransportException ex)
            {
                _log.LogDebug("Server {Id}: could not acknowledge {Peer}: {Message}", Id, ack.Connection.Peer, ex.Message);
            }
        }
    }

    private void SendAck(Connection connection, in FrameHeader request)
    {
        var header = ResponseTo(request);
        using var frame = connection.Reserve(FrameHeader.Size);
        header.Write(frame.Span);
        frame.Commit();
    }

    /// <summary>
    /// Writes the pulled rows straight from the store into the connection's send buffer, or, for a large answer
    /// from a dense table when this thread can send exclusively, straight from the store to the socket.
    /// </summary>
    private void SendValues(Connection connection, in FrameHeader request, TableStore table, KeyList keys)
    {
        var header = ResponseTo(request);
        header.KeyCount = keys.Count;
        header.RowWidth = table.Width;
        header.PayloadLength = checked(keys.Count * table.Width * sizeof(float));
        if (request.AnswerCodec != 0 && keys.Count > 0 && CodecSpec.FromAnswerByte(request.AnswerCodec) is { IsNone: false } codec)
        {
            SendEncodedValues(connection, header, codec, table, keys);
            return;
        }
        if (header.PayloadLength >= Connection.LargeFrameBytes && table.Info.IsDense && NativeSend.IsSupported && connection.TryBeginExclusiveSend())
        {
            try
            {
                Span<byte> head = stackalloc byte[FrameHeader.Size];
                header.Write(head);
                connection.SendExclusive(head, more: true);
                connection.CountSent(MessageType.Response, header.FrameLength);
                var sink = new SocketSink(connection, header.PayloadLength);
                try
                {
                    table.Read(keys, ref sink);
                    sink.Finish();
                }
                finally
                {
                    sink.Dispose();
                }
            }
            finally
            {
                connection.EndExclusiveSend();
            }
            return;
        }
        using var frame = connection.Reserve(header.FrameLength);
        header.Write(frame.Span);
        table.Read(keys, MemoryMarshal.Cast<byte, float>(frame.Span[FrameHeader.Size..]));
        frame.Commit();
    }

    /// <summary>The pulled rows encoded as the request asked (zero suppression, lz, fp16/bf16): read aside, encoded into the send buffer.</summary>
    private static void SendEncodedValues(Connection connection, FrameHeader header, CodecSpec codec, TableStore table, KeyList keys)
    {
        int valueCount = keys.Count * table.Width;
        var rows = ArrayPool<float>.Shared.Rent(valueCount);
        var encoded = ArrayPool<byte>.Shared.Rent(ValueCodec.MaxEncodedBytes(valueCount, table.Width) + 8);
        try
        {
            table.Read(keys, rows.AsSpan(0, valueCount));
            int length = ValueCodec.Encode(codec, rows.AsSpan(0, valueCount), table.Width, encoded);
            int padded = (length + 7) & ~7;
            encoded.AsSpan(length, padded - length).Clear();
            header.Flags |= FrameFlags.Compressed;
            header.PayloadLength = padded;
            using var frame = connection.Reserve(header.FrameLength);
            header.Write(frame.Span);
            encoded.AsSpan(0, padded).CopyTo(frame.Span[FrameHeader.Size..]);
            frame.Commit();
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
            ArrayPool<byte>.Shared.Return(encoded);
        }
    }

    /// <summary>
    /// Rows to the socket without a copy: each large run is sent while its block lock is held, waiting for socket
    /// buffer room no longer than copying the run would have taken (so a slow reader holds a lock no longer than the
    /// copying path would); what is left then is copied aside and sent after the locks are released. Small rows are
    /// copied aside too (a system call each would cost more).
    /// </summary>
    private ref struct SocketSink(Connection connection, int payloadLength) : IRowSink
    {
        private const int MinDirectBytes = 16 << 10;
        private const double CopyBytesPerSecond = 1e9; // a memory copy on a slow machine (docs/PERFORMANCE.md)
        private readonly Connection _connection = connection;
        private int _remaining = payloadLength;
        private byte[]? _spill;
        private int _spillStart;
        private int _spillEnd;
        private bool _socketFull;

        public void Write(ReadOnlySpan<float> values)
        {
            var bytes = MemoryMarshal.AsBytes(values);
            if (bytes.Length >= MinDirectBytes && !_socketFull && DrainSpill())
            {
                long deadline = Stopwatch.GetTimestamp() + (long)(bytes.Length / CopyBytesPerSecond * Stopwatch.Frequency);
                int sent = _connection.SendExclusiveUntil(bytes, deadline);
                _remaining -= sent;
                _socketFull = sent < bytes.Length;
                bytes = bytes[sent..];
            }
            if (!bytes.IsEmpty)
            {
                bytes.CopyTo(Append(bytes.Length));
            }
        }

        public void WriteZeros(int count) => Append(count * sizeof(float)).Clear();

        /// <summary>Sends the copied-aside bytes if the socket takes them all now; false when some are still waiting.</summary>
        private bool DrainSpill()
        {
            if (_spillEnd == _spillStart)
            {
                return true;
            }
            if (_socketFull)
            {
                return false;
            }
            int sent = _connection.TrySendExclusiveNow(_spill.AsSpan(_spillStart, _spillEnd - _spillStart));
            _spillStart += sent;
            _remaining -= sent;
            if (_spillStart < _spillEnd)
            {
                _socketFull = true;
                return false;
            }
            _spillStart = _spillEnd = 0;
            return true;
        }

        private Span<byte> Append(int count)
        {
            _spill ??= ArrayPool<byte>.Shared.Rent(_remaining); // all that is still unsent fits
            var span = _spill.AsSpan(_spillEnd, count);
            _spillEnd += count;
            return span;
        }

        /// <summary>Sends what was copied aside (blocking, no lock held any more).</summary>
        public readonly void Finish()
        {
            if (_spillEnd > _spillStart)
            {
                _connection.SendExclusive(_spill.AsSpan(_spillStart, _spillEnd - _spillStart));
            }
        }

        public void Dispose()
        {
            if (_spill is not null)
            {
                ArrayPool<byte>.Shared.Return(_spill);
                _spill = null;
            }
        }
    }

    private FrameHeader ResponseTo(in FrameHeader request) => new()
    {
        Type = MessageType.Response,
        SenderId = Id,
        RequestId = request.RequestId,
        Timestamp = request.Timestamp,
        ViewNumber = _view?.Number ?? 0,
        TableId = request.TableId,
        RowWidth = request.RowWidth > 0 ? request.RowWidth : 1,
        ElementType = WireElementType.Float32,
        Round = request.Round,
    };

    private void SendError(Connection connection, in FrameHeader request, ErrorCode code, string message)
    {
        var header = ResponseTo(request);
        header.Error = code;
        header.RowWidth = 1;
        try
        {
            connection.Send(header, Encoding.UTF8.GetBytes(message));
        }
        catch (TransportException ex)
        {
            _log.LogDebug("Server {Id}: could not send an error to {Peer}: {Message}", Id, connection.Peer, ex.Message);
        }
    }

    /// <summary>Per table counters as one JSON object: what `pserver server` prints when the job ends, and what ServerStats returns.</summary>
    public string StatsJson()
    {
        var tables = _tables.Where(t => t is not null).Select(t =>
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
        var traffic = Traffic.Snapshot();
        var w = new PayloadWriter();
        traffic.Write(w);
        return JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["server"] = Id,
            ["requests"] = Interlocked.Read(ref _requests),
            ["replicated"] = Interlocked.Read(ref _replicated),
            ["resend_rows_skipped"] = Interlocked.Read(ref _resendRowsSkipped),
            ["refill_blocks_sent"] = Interlocked.Read(ref _refillBlocksSent),
            ["refill_blocks_received"] = Interlocked.Read(ref _refillBlocksReceived),
            ["bytes_sent"] = traffic.BytesSent,
            ["bytes_received"] = traffic.BytesReceived,
            ["traffic"] = traffic.ToJson(),
            ["key_cache"] = KeyCacheJson(),
            ["pull_filter"] = new Dictionary<string, long> { ["rows"] = Interlocked.Read(ref _pullRowsFiltered), ["rows_left_out"] = Interlocked.Read(ref _pullRowsSkipped) },
            ["traffic_counters"] = Convert.ToBase64String(w.WrittenSpan), // the same counts, for adding up across servers (JobTraffic)
            ["tables"] = tables,
        });
    }

    private (long Hits, long Misses, long Evictions) _retiredKeyCaches;

    /// <summary>A closed connection's key cache: its counts are kept, the cache is let go.</summary>
    private void RetireKeyCache(ReceiverKeyCache cache)
    {
        lock (_keyCaches)
        {
            if (_keyCaches.Remove(cache))
            {
                _retiredKeyCaches = (_retiredKeyCaches.Hits + cache.Hits, _retiredKeyCaches.Misses + cache.Misses, _retiredKeyCaches.Evictions + cache.Evictions);
            }
        }
    }

    private Dictionary<string, long> KeyCacheJson()
    {
        lock (_keyCaches)
        {
            return new Dictionary<string, long>
            {
                ["hits"] = _retiredKeyCaches.Hits + _keyCaches.Sum(c => c.Hits),
                ["misses"] = _retiredKeyCaches.Misses + _keyCaches.Sum(c => c.Misses),
                ["evictions"] = _retiredKeyCaches.Evictions + _keyCaches.Sum(c => c.Evictions),
                ["bytes"] = _keyCaches.Sum(c => c.Bytes),
            };
        }
    }

    public ValueTask DisposeAsync()
    {
        _listener.Dispose();
        _scheduler?.Dispose();
        ClosePeers();
        _completion.TrySetResult(1);
        return ValueTask.CompletedTask;
    }
}
