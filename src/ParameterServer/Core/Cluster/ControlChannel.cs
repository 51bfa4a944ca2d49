using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Core.Cluster;

/// <summary>A reply on the control plane: its header and a copy of its payload.</summary>
internal sealed record ControlReply(FrameHeader Header, byte[] Payload);

/// <summary>
/// The scheduler's answer to a status request: its view, its migrations (one line each), each node's last published
/// traffic counters, whether the copies lost with the last dead server are all restored, and the workers' last reports.
/// </summary>
internal sealed record StatusReply(ClusterView View, string[] Migrations, Dictionary<int, TrafficSnapshot> Traffic, bool CopiesComplete, Dictionary<int, NodeReport> Reports);

/// <summary>
/// A node's connection to the scheduler: request/response calls with timeouts, plus a callback for frames the
/// scheduler sends on its own (views, shutdown). Control plane only, so it may allocate.
/// </summary>
internal sealed class ControlChannel : IFrameHandler, IDisposable
{
    private readonly Dictionary<ulong, PendingCall> _calls = new();
    private readonly Lock _lock = new();
    private readonly Action<FrameHeader, byte[]> _onPush;
    private readonly Action<string>? _onClosed;
    private Connection? _connection;
    private ulong _nextRequestId;
    private TransportOptions _transport = new();
    private ILogger? _logger;
    private TimeSpan _reconnectFor;
    private Func<byte[]>? _rejoinPayload;
    private volatile bool _disposed;
    private volatile bool _lost;

    /// <summary>A call waiting for its answer; kept whole so it can be sent again after a reconnect.</summary>
    private sealed record PendingCall(TaskCompletionSource<ControlReply> Reply, MessageType Type, byte[] Payload, int TableId, long Round, uint Aux)
    {
        public long StartedMs { get; } = Environment.TickCount64;

        public bool ReportedSlow { get; set; }
    }

    private ControlChannel(string address, Action<FrameHeader, byte[]> onPush, Action<string>? onClosed)
    {
        Address = address;
        _onPush = onPush;
        _onClosed = onClosed;
    }

    public string Address { get; }

    /// <summary>How long a node tries to reach a lost scheduler again before giving up on the job.</summary>
    public static readonly TimeSpan ReconnectWindow = TimeSpan.FromSeconds(15);

    public int SenderId { get; set; } = -1;

    /// <summary>Renewed by the scheduler's heartbeat echoes (servers set one: fencing); null: heartbeats are not echoed.</summary>
    public SchedulerLease? Lease { get; set; }

    /// <summary>Closed for good: disposed, or lost and not reconnected within the grace period.</summary>
    public bool IsClosed => _disposed || _lost || _connection is null;

    private TrafficMeter? _meter;

    /// <summary>What this node adds to its traffic counters about once a second (a worker's progress and calls); null: nothing.</summary>
    public Func<NodeReport>? Reporter { get; set; }

    /// <summary>
    /// Sends this node's traffic counters to the scheduler now (a heartbeat with a payload). Frames on the channel
    /// stay in order, so a barrier entered after this finds the counters at the scheduler.
    /// </summary>
    public void PublishTraffic()
    {
        if (_meter is null)
        {
            return;
        }
        var w = new PayloadWriter();
        _meter.Snapshot().Write(w);
        Reporter?.Invoke().Write(w);
        Send(MessageType.Heartbeat, w.WrittenSpan, Lease?.NextHeartbeat() ?? (_endpointCount > 1 ? Interlocked.Increment(ref _beats) : 0));
    }

    /// <summary>The traffic counters the scheduler last heard from each live node (see <see cref="PublishTraffic"/>).</summary>
    public async Task<Dictionary<int, TrafficSnapshot>> FetchTrafficAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var reply = await CallAsync(MessageType.Status, ReadOnlyMemory<byte>.Empty, "a status request", timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        return ReadStatus(reply.Payload).Traffic;
    }

    /// <summary>
    /// After a lost connection, reconnect for up to <paramref name="grace"/> (a restarted scheduler resumes the job)
    /// and rejoin with <paramref name="rejoinPayload"/>; calls in flight are sent again. Only if that fails is the
    /// channel closed (and the close callback run).
    /// </summary>
    public void EnableReconnect(TimeSpan grace, Func<byte[]> rejoinPayload)
    {
        _reconnectFor = grace;
        _rejoinPayload = rejoinPayload;
    }

    /// <summary>
    /// Connects to the scheduler, retrying with backoff (0.1 s doubling to 2 s) for up to <paramref name="wait"/>:
    /// nodes may start before their scheduler (Kubernetes starts pods in any order). Says once what it waits for;
    /// past the wait, throws <see cref="PsException"/> (Unreachable) with the last error.
    /// </summary>
    public static async Task<ControlChannel> ConnectAsync(string address, TransportOptions options, ILogger? logger, Action<FrameHeader, byte[]> onPush, Action<string>? onClosed, TrafficMeter? meter, TimeSpan wait, CancellationToken cancellationToken)
    {
        long deadline = Environment.TickCount64 + (long)wait.TotalMilliseconds;
        var delay = TimeSpan.FromMilliseconds(100);
        bool said = false;
        while (true)
        {
            try
            {
                return Connect(address, options, logger, onPush, onClosed, meter);
            }
            catch (PsException ex) when (ex.Code == PsErrorCode.Unreachable) // a malformed address throws ArgumentException: not retried
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Unreachable, $"no scheduler accepted a connection at {address} within {wait.TotalSeconds:0.#} s (--startup-timeout): {ex.Message}", ex);
                }
                if (!said)
                {
                    logger?.LogWaitingForScheduler(address, (ex.InnerException ?? ex).Message, wait.TotalSeconds);
                    said = true;
                }
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(left, delay.TotalMilliseconds)), cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromMilliseconds(Math.Min(2000, delay.TotalMilliseconds * 2));
            }
        }
    }

    /// <summary>
    /// Connects to the scheduler at "host:port" (or the first of "host:port,host:port..." that accepts: the active one
    /// of a scheduler and its standbys) or throws <see cref="PsException"/> (Unreachable) saying so.
    /// </summary>
    public static ControlChannel Connect(string address, TransportOptions options, ILogger? logger, Action<FrameHeader, byte[]> onPush, Action<string>? onClosed = null, TrafficMeter? meter = null)
    {
        var endpoints = Endpoints.ParseList(address, "--scheduler");
        var channel = new ControlChannel(address, onPush, onClosed) { _meter = meter, _transport = options, _logger = logger };
        try
        {
            channel._connection = channel.ConnectAny(endpoints, options);
            channel._endpointCount = endpoints.Length;
        }
        catch (TransportException ex) when (ex.IsAuthentication)
        {
            throw new PsException(PsErrorCode.Unauthenticated, ex.Message, ex);
        }
        catch (TransportException ex)
        {
            throw new PsException(PsErrorCode.Unreachable, $"{ex.Message}. Is `pserver scheduler` running there? Check --scheduler / PS_SCHEDULER.", ex);
        }
        return channel;
    }

    /// <summary>A connection to the first of the schedulers that accepts one, starting after the one last connected; throws the last refusal.</summary>
    private Connection ConnectAny((string Host, int Port)[] endpoints, TransportOptions options, int skip = 0)
    {
        TransportException? last = null;
        for (int i = 0; i < endpoints.Length; i++)
        {
            int index = (_lastEndpoint + skip + i) % endpoints.Length;
            var (host, port) = endpoints[index];
            try
            {
                var connection = Connection.Connect(host, port, this, options, _logger, endpoints.Length == 1 ? "the scheduler" : $"the scheduler at {host}:{port}", _meter);
                _lastEndpoint = index;
                Volatile.Write(ref _lastEchoMs, Environment.TickCount64);
                return connection;
            }
            catch (TransportException ex)
            {
                last = ex;
            }
        }
        throw last!;
    }

    private int _lastEndpoint; // the scheduler of the list last connected
    private int _endpointCount = 1;
    private long _lastEchoMs = Environment.TickCount64; // the last heartbeat echo heard from the scheduler
    private ulong _beats; // echo request ids of nodes without a lease (workers), when there are standbys

    /// <summary>
    /// With standby schedulers (a list), a scheduler silent this long (no heartbeat echo) is given up for the others:
    /// longer than an etcd lease (2 s), so the silent one has stopped acting before the nodes try the next.
    /// </summary>
    public static readonly TimeSpan SilentSchedulerAfter = TimeSpan.FromSeconds(3);

    /// <summary>Asks a scheduler for its current view without joining the job (pserver status).</summary>
    public static async Task<ClusterView> FetchViewAsync(string address, TimeSpan timeout, CancellationToken cancellationToken) =>
        (await FetchStatusAsync(address, timeout, cancellationToken).ConfigureAwait(false)).View;

    /// <summary>The scheduler's current view and its migrations (done and in progress), one line each.</summary>
    public static async Task<StatusReply> FetchStatusAsync(string address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var channel = Connect(address, new TransportOptions { ConnectTimeout = timeout }.As(NodeRole.Observer), null, (_, _) => { });
        var reply = await channel.CallAsync(MessageType.Status, ReadOnlyMemory<byte>.Empty, "a status request", timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        return ReadStatus(reply.Payload);
    }

    /// <summary>
    /// The status reply: the view, the migration lines, each node's last published traffic counters, whether the
    /// copies lost with the last dead server are all restored, then the nodes' last reports.
    /// </summary>
    private static StatusReply ReadStatus(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        var view = ClusterView.Read(ref r);
        var migrations = new string[r.Remaining > 0 ? r.ReadCount(1 << 16) : 0];
        for (int i = 0; i < migrations.Length; i++)
        {
            migrations[i] = r.ReadString(4096);
        }
        var traffic = new Dictionary<int, TrafficSnapshot>();
        int nodes = r.Remaining > 0 ? r.ReadCount(1 << 20) : 0;
        for (int i = 0; i < nodes; i++)
        {
            int id = r.ReadInt32();
            traffic[id] = TrafficSnapshot.Read(ref r);
        }
        bool copiesComplete = r.Remaining <= 0 || r.ReadInt32() != 0;
        var reports = new Dictionary<int, NodeReport>();
        int reporting = r.Remaining > 0 ? r.ReadCount(1 << 20) : 0;
        for (int i = 0; i < reporting; i++)
        {
            int id = r.ReadInt32();
            reports[id] = NodeReport.Read(ref r);
        }
        return new StatusReply(view, migrations, traffic, copiesComplete, reports);
    }

    /// <summary>Asks the scheduler to drain a node (pserver drain); returns its answer.</summary>
    public static Task<string> DrainAsync(string address, int nodeId, CancellationToken cancellationToken) =>
        AdminCallAsync(address, MessageType.Drain, ControlMessages.Ints(nodeId), $"draining node {nodeId}", TimeSpan.FromSeconds(10), cancellationToken);

    /// <summary>Asks the scheduler to even out the servers' ring shares (pserver rebalance); returns its answer.</summary>
    public static Task<string> RebalanceAsync(string address, bool dryRun, CancellationToken cancellationToken) =>
        AdminCallAsync(address, MessageType.Rebalance, ControlMessages.Ints(dryRun ? 1 : 0), "a rebalance", TimeSpan.FromSeconds(30), cancellationToken);

    /// <summary>An operator's request to the scheduler (drain, rebalance); returns its answer, or throws <see cref="PsException"/> with the refusal.</summary>
    private static async Task<string> AdminCallAsync(string address, MessageType type, byte[] payload, string what, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var channel = Connect(address, new TransportOptions { ConnectTimeout = timeout }.As(NodeRole.Observer), null, (_, _) => { });
        var reply = await channel.CallAsync(type, payload, what, timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(reply.Payload);
    }

    /// <summary>Sends a request and waits for its response; throws <see cref="PsException"/> on error, close or timeout.</summary>
    public async Task<ControlReply> CallAsync(MessageType type, ReadOnlyMemory<byte> payload, string what, TimeSpan timeout, int tableId = 0, long round = 0, uint aux = 0, CancellationToken cancellationToken = default)
    {
        if (_connection is null)
        {
            throw new InvalidOperationException("not connected");
        }
        if (IsClosed)
        {
            throw new PsException(PsErrorCode.ConnectionLost, $"lost the scheduler at {Address}");
        }
        var tcs = new TaskCompletionSource<ControlReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        ulong id;
        lock (_lock)
        {
            id = ++_nextRequestId;
            _calls[id] = new PendingCall(tcs, type, payload.ToArray(), tableId, round, aux);
        }
        try
        {
            try
            {
                Send(type, payload.Span, id, tableId, round, aux);
            }
            catch (PsException) when (_rejoinPayload is not null && !IsClosed)
            {
                // Reconnecting: the call is sent again once the scheduler is back.
            }
            var reply = await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            if (reply.Header.Error != ErrorCode.None)
            {
                throw new PsException((PsErrorCode)reply.Header.Error, $"the scheduler refused {what}: {Encoding.UTF8.GetString(reply.Payload)}");
            }
            return reply;
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, $"no answer from the scheduler at {Address} to {what} within {timeout.TotalSeconds:0.#} s");
        }
        finally
        {
            lock (_lock)
            {
                _calls.Remove(id);
            }
        }
    }

    /// <summary>For a stall diagnosis: the calls to the scheduler awaiting answers.</summary>
    public string DescribePending()
    {
        lock (_lock)
        {
            var waiting = _calls.Where(c => !c.Value.Reply.Task.IsCompleted && c.Value.Type != MessageType.Rejoin).Select(c => $"{c.Value.Type} (request {c.Key})").ToList();
            return waiting.Count == 0 ? "no call to the scheduler awaits an answer" : $"awaiting the scheduler: {string.Join(", ", waiting)}{(IsClosed ? " (channel closed)" : "")}";
        }
    }

    /// <summary>
    /// For hang reports: the calls to the scheduler (barriers, table declarations, ...) unanswered longer than
    /// <paramref name="olderThan"/>, into <paramref name="slow"/>, and those that crossed it since the last call into
    /// <paramref name="newlySlow"/> (each call once), for the log.
    /// </summary>
    public void DescribeSlow(TimeSpan olderThan, List<string> slow, List<string>? newlySlow)
    {
        long now = Environment.TickCount64;
        lock (_lock)
        {
            foreach (var (id, call) in _calls)
            {
                if (!call.Reply.Task.IsCompleted && call.Type != MessageType.Rejoin && now - call.StartedMs >= olderThan.TotalMilliseconds)
                {
                    double waited = (now - call.StartedMs) / 1000.0;
                    string text = call.Type == MessageType.Barrier
                        ? string.Create(CultureInfo.InvariantCulture, $"barrier #{call.Round} has waited {waited:0.0} s for the other workers to reach it")
                        : string.Create(CultureInfo.InvariantCulture, $"{call.Type} (request {id}) has waited {waited:0.0} s for the scheduler's answer");
                    slow.Add(text);
                    if (newlySlow is not null && !call.ReportedSlow)
                    {
                        call.ReportedSlow = true;
                        newlySlow.Add(text);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Sends a heartbeat every <paramref name="interval"/> until the channel closes or <paramref name="stopped"/> says so,
    /// from its own thread: a busy thread pool must not make a live node look dead.
    /// </summary>
    public void StartHeartbeats(TimeSpan interval, Func<bool> stopped)
    {
        var thread = new Thread(() =>
        {
            long beats = 0;
            while (!stopped() && !IsClosed)
            {
                if (Lease is { } lease && !lease.IsHeld(out long lapsedMs) && lapsedMs > SchedulerLease.GiveUpAfter.TotalMilliseconds)
                {
                    // Heartbeats reach the scheduler but its echoes do not come back (a one-way partition, a scheduler
                    // that hangs): a node that cannot hear the scheduler is of no use to the job. It leaves, and its
                    // silence then gets it declared dead, instead of staying in the view refusing every request.
                    string why = $"this node has not heard the scheduler's heartbeat echoes for {lapsedMs / 1000.0:0.#} s past its lease (a one-way partition?)";
                    CloseForGood(why);
                    _connection?.Close(why);
                    break;
                }
                if (_endpointCount > 1 && _connection is { } current && Environment.TickCount64 - Volatile.Read(ref _lastEchoMs) > SilentSchedulerAfter.TotalMilliseconds)
                {
                    // A standby may have taken over from a scheduler cut off or frozen: closing the connection starts
                    // the reconnection, which tries the other schedulers first.
                    Volatile.Write(ref _lastEchoMs, Environment.TickCount64);
                    current.Close($"no heartbeat echo from the scheduler for {SilentSchedulerAfter.TotalSeconds:0} s; trying the other schedulers");
                }
                try
                {
                    // About once a second a heartbeat carries the node's traffic counters (for `pserver status`).
                    if (_meter is not null && beats++ % Math.Max(1, (long)(1000 / Math.Max(1, interval.TotalMilliseconds))) == 0)
                    {
                        PublishTraffic();
                    }
                    else
                    {
                        Send(MessageType.Heartbeat, [], Lease?.NextHeartbeat() ?? (_endpointCount > 1 ? Interlocked.Increment(ref _beats) : 0));
                    }
                }
                catch (PsException)
                {
                    // Disconnected: reconnecting, or closed for good (the loop ends).
                }
                Thread.Sleep(interval);
            }
        })
        { IsBackground = true, Name = "ps-heartbeat" };
        thread.Start();
    }

    /// <summary>Sends a frame that needs no answer (heartbeat, view acknowledgement).</summary>
    public void Send(MessageType type, ReadOnlySpan<byte> payload, ulong requestId = 0, int tableId = 0, long round = 0, uint aux = 0)
    {
        var connection = _connection ?? throw new InvalidOperationException("not connected");
        var header = new FrameHeader { Type = type, SenderId = SenderId, RequestId = requestId, TableId = tableId, Round = round, Aux = aux, RowWidth = 1, ElementType = WireElementType.Float32 };
        try
        {
            connection.Send(header, payload, now: true); // never behind the receive thread, which may be busy applying a view
        }
        catch (TransportException ex)
        {
            throw new PsException(PsErrorCode.ConnectionLost, $"cannot reach the scheduler at {Address}: {ex.Message}", ex);
        }
    }

    public void Reply(in FrameHeader request, ReadOnlySpan<byte> payload)
    {
        var header = new FrameHeader { Type = MessageType.Response, SenderId = SenderId, RequestId = request.RequestId, RowWidth = 1, ElementType = WireElementType.Float32 };
        _connection?.Send(header, payload, now: true);
    }

    void IFrameHandler.OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type == MessageType.Heartbeat)
        {
            Volatile.Write(ref _lastEchoMs, Environment.TickCount64);
            Lease?.Renew(header.RequestId, payload.Length >= sizeof(int) ? System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(payload) : 0);
            return;
        }
        if (header.Type == MessageType.Response)
        {
            PendingCall? call;
            lock (_lock)
            {
                _calls.Remove(header.RequestId, out call);
            }
            call?.Reply.TrySetResult(new ControlReply(header, payload.ToArray()));
            return;
        }
        _onPush(header, payload.ToArray());
    }

    void IFrameHandler.OnClosed(Connection connection, string reason)
    {
        if (_disposed || _lost || connection != _connection)
        {
            return;
        }
        Lease?.SchedulerClosed(SchedulerLease.RestartGrace);
        if (_rejoinPayload is not null && _reconnectFor > TimeSpan.Zero)
        {
            _ = Task.Run(() => ReconnectAsync(reason));
            return;
        }
        CloseForGood(reason);
    }

    private void CloseForGood(string reason)
    {
        _lost = true;
        List<PendingCall> pending;
        lock (_lock)
        {
            pending = _calls.Values.ToList();
            _calls.Clear();
        }
        foreach (var call in pending)
        {
            string hint = _transport.Secret is null ? " (if the job runs with --secret-file, this process needs the same file, or --token-file with its read-only token to look)" : "";
            call.Reply.TrySetException(new PsException(PsErrorCode.ConnectionLost, $"lost the scheduler at {Address}: {reason}{hint}"));
        }
        _onClosed?.Invoke(reason);
    }

    /// <summary>Connects again and rejoins (the scheduler may be restarting), then sends the calls still waiting.</summary>
    private async Task ReconnectAsync(string reason)
    {
        _logger?.LogSchedulerReconnecting(Address, reason, _reconnectFor.TotalSeconds);
        var endpoints = Endpoints.ParseList(Address, "--scheduler");
        // With standbys, the one lost is tried last, and a host that does not answer is given up on quickly (a
        // cut-off host black-holes connection attempts; the active standby accepts at once).
        var options = endpoints.Length == 1 ? _transport : _transport.WithConnectTimeout(TimeSpan.FromSeconds(1));
        int skip = endpoints.Length == 1 ? 0 : 1;
        long deadline = Environment.TickCount64 + (long)_reconnectFor.TotalMilliseconds;
        string last = reason;
        while (!_disposed && Environment.TickCount64 < deadline)
        {
            await Task.Delay(100).ConfigureAwait(false);
            Connection connection;
            try
            {
                connection = ConnectAny(endpoints, options, skip); // the old one restarted, or a standby took over
            }
            catch (TransportException ex)
            {
                last = ex.Message;
                continue;
            }
            _connection = connection;
            var rejoin = new TaskCompletionSource<ControlReply>(TaskCreationOptions.RunContinuationsAsynchronously);
            ulong id;
            lock (_lock)
            {
                id = ++_nextRequestId;
                _calls[id] = new PendingCall(rejoin, MessageType.Rejoin, [], 0, 0, 0);
            }
            try
            {
                Send(MessageType.Rejoin, _rejoinPayload!(), id);
                var reply = await rejoin.Task.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                if (reply.Header.Error != ErrorCode.None)
                {
                    CloseForGood($"{reason}; the scheduler at {Address} came back but refused this node: {Encoding.UTF8.GetString(reply.Payload)}");
                    return;
                }
            }
            catch (Exception ex) when (ex is PsException or TimeoutException)
            {
                last = ex.Message;
                continue;
            }
            List<(ulong Id, PendingCall Call)> resend;
            lock (_lock)
            {
                resend = _calls.Where(c => c.Value.Type != MessageType.Rejoin).Select(c => (c.Key, c.Value)).ToList();
            }
            foreach (var (callId, call) in resend)
            {
                try
                {
                    Send(call.Type, call.Payload, callId, call.TableId, call.Round, call.Aux);
                }
                catch (PsException)
                {
                    break; // lost again: OnClosed starts over
                }
            }
            _logger?.LogSchedulerRejoined(Address, resend.Count);
            return;
        }
        if (!_disposed)
        {
            CloseForGood($"{reason}; no scheduler at {Address} for {_reconnectFor.TotalSeconds:0} s ({last})");
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _connection?.Close("closed by this node");
    }
}

internal static class Endpoints
{
    /// <summary>Parses "host:port"; the error names the option the value came from.</summary>
    public static (string Host, int Port) Parse(string address, string optionName)
    {
        int colon = address.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(address.AsSpan(colon + 1), out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"{optionName} must be HOST:PORT with a port in 1..65535, got '{address}'");
        }
        return (address[..colon], port);
    }

    /// <summary>
    /// Parses "host:port[,host:port...]": the schedulers a node may find active, tried in order (a standby does not
    /// listen until it takes over).
    /// </summary>
    public static (string Host, int Port)[] ParseList(string addresses, string optionName) =>
        addresses.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } list
            ? list.Select(a => Parse(a, optionName)).ToArray()
            : throw new ArgumentException($"{optionName} must be HOST:PORT[,HOST:PORT...], got '{addresses}'");
}
