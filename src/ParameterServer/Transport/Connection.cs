using System.Buffers;
using Microsoft.Extensions.Logging;
using ParameterServer.Protocol;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Transport;

/// <summary>
/// One connection to a peer node, over a stream (<see cref="IConnectionStream"/>: TCP, or in-process for tests). Receiving: a dedicated thread reads into a pooled buffer, parses whole
/// frames in place and hands each to the <see cref="IFrameHandler"/> inline (no thread hand-off). Sending:
/// callers reserve room in a pooled batch buffer; the first caller that finds no send in progress becomes the
/// flusher and writes everything queued meanwhile in one <c>Send</c> (write coalescing without a send thread).
/// When more than <see cref="TransportOptions.SendQueueHighWaterBytes"/> are queued, callers wait (backpressure).
/// While the receive thread handles a batch of frames, frames queued by anyone are left for it to flush once at the
/// end of the batch: pipelined requests and their answers then cost one <c>send</c> per batch, not one per frame.
/// Likewise a small frame queued while more than <see cref="InlineSendDepth"/> answers are awaited (a deep pipeline,
/// see <see cref="ExpectAnswer"/>) is left for the receive thread to flush after the batch those answers arrive in.
/// Frames of <see cref="LargeFrameBytes"/> or more skip the batch buffer: they are sent from the caller's array and
/// received in place (or straight into the handler's memory, see <see cref="IFrameHandler.TryBeginDirect"/>).
/// </summary>
internal sealed partial class Connection
{
    /// <summary>From this size on a frame is not copied into the batch buffer, and the receiver reads no further than its end.</summary>
    public const int LargeFrameBytes = 64 << 10;

    /// <summary>
    /// With at most this many answers awaited a frame is sent at once (latency); deeper, the peer is busy with those
    /// anyway and the frame joins the receive thread's next flush (fewer packets, fewer wake-ups on both sides).
    /// </summary>
    public const int InlineSendDepth = 2;

    /// <summary>Payload bytes a handler sees in <see cref="IFrameHandler.TryBeginChunks"/> (enough for the keys of a large push).</summary>
    public const int ChunkedPrefixBytes = 4096;

    /// <summary>Bytes per piece of a chunked frame: small enough to stay in a core's cache between the kernel's copy and the handler's use.</summary>
    public const int ChunkBytes = 128 << 10;

    private readonly IConnectionStream _stream;
    private readonly IFrameHandler _handler;
    private readonly TransportOptions _options;
    private readonly ILogger? _logger;
    private readonly object _sendLock = new();
    private byte[] _pending;
    private int _pendingLength;
    private byte[]? _spare;
    private bool _flushing;
    private int _reservedLength = -1; // >= 0 while a FrameReservation holds _sendLock
    private bool _flushNow; // under _sendLock: the reservation being filled is flushed by its sender (Send(now: true))
    private bool _receiving; // the receive thread is handling a batch of frames and will flush what is queued after it
    private int _awaited; // answers the handler still awaits on this connection (see ExpectAnswer)
    private string? _closeReason;
    private long _frameSinceMs; // when the receive thread began waiting for the rest of a frame (Environment.TickCount64), 0: none
    private int _pendingFrameBytes; // that frame's length, 0 while its header is incomplete
    private volatile bool _handling; // the receive thread is in the handler: not the sender's time
    private long _bytesSent;
    private long _bytesReceived;

    public Connection(IConnectionStream stream, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer, TrafficMeter? meter = null)
    {
        _stream = stream;
        _stream.WriteStallTimeout = options.SendTimeout; // no write waits on a peer for longer: a hung peer fails its connection
        _handler = handler;
        _options = options;
        _logger = logger;
        Traffic = meter?.Add(peer) ?? new PeerTraffic(peer);
        _peer = peer;
        _pending = ArrayPool<byte>.Shared.Rent(64 << 10);
    }

    /// <summary>Who is on the other end, for messages ("server 2 at 127.0.0.1:5001"). Updated once the peer identifies itself.</summary>
    public string Peer
    {
        get => _peer;
        set
        {
            _peer = value;
            Traffic.Label = value;
        }
    }

    private string _peer;

    /// <summary>Whole frames and their bytes, by message type, in and out of this connection.</summary>
    public PeerTraffic Traffic { get; }

    /// <summary>
    /// Counts a frame a caller sent in pieces with <see cref="SendExclusive"/> and friends (the batch and
    /// <see cref="SendFrame(byte[], int)"/> count their frames themselves).
    /// </summary>
    public void CountSent(MessageType type, long frameLength) => Traffic.CountOut((byte)type, frameLength);

    /// <summary>State owned by the handler (for example the peer's node id).</summary>
    public object? Tag { get; set; }

    /// <summary>The role the peer proved with the job's secret (accepted connections of a node with a secret), else null.</summary>
    public NodeRole? AuthenticatedRole { get; set; }

    /// <summary>The peer's address, if the stream knows it.</summary>
    public string? RemoteAddress => _stream.RemoteAddress;

    public bool IsClosed => Volatile.Read(ref _closeReason) is not null;

    public string? CloseReason => Volatile.Read(ref _closeReason);

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public int MaxFrameBytes => _options.MaxFrameBytes;

    /// <summary>Opens a connection, or throws <see cref="TransportException"/> naming the peer and the cause.</summary>
    public static Connection Connect(string host, int port, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer, TrafficMeter? meter = null, CancellationToken cancellation = default)
    {
        var stream = options.Connections.Connect(host, port, options.ConnectTimeout, peer, cancellation);
        if (options.Tls is { } tls)
        {
            stream = TlsStream.Connect(stream, tls, host, options.HandshakeTimeout, peer);
        }
        var (key, role) = options.Secret is { } secret ? (secret, options.Role)
            : options.Role == NodeRole.Observer && options.ReadToken is { } token ? (token, NodeRole.Reader) // a tool with only the read-only token
            : (null, options.Role);
        if (key is not null)
        {
            try
            {
                Handshake.Connect(stream, key, role, options.HandshakeTimeout, peer);
            }
            catch
            {
                stream.Dispose();
                throw;
            }
        }
        var connection = new Connection(stream, handler, options, logger, peer, meter);
        connection.Start();
        return connection;
    }

    public void Start()
    {
        s_open.TryAdd(this, 0);
        var thread = new Thread(ReceiveLoop) { IsBackground = true, Name = "ps-recv" };
        thread.Start();
    }

    /// <summary>Runs once when the connection closes (a listener's count of connections per address).</summary>
    internal Action? Released { get; set; }

    /// <summary>A sender must finish a frame within <see cref="TransportOptions.FrameTimeout"/> plus 1 ms per this many bytes of it.</summary>
    private const int MinFrameBytesPerMs = 1 << 10;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Connection, byte> s_open = new();

    /// <summary>Once a second: closes connections whose partial frame is overdue (a slow-loris sender holds a thread and a buffer).</summary>
    private static readonly Timer s_frameWatchdog = new(_ => CloseOverdueFrames(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));

    private static void CloseOverdueFrames()
    {
        long now = Environment.TickCount64;
        foreach (var connection in s_open.Keys)
        {
            long since = Volatile.Read(ref connection._frameSinceMs);
            if (since == 0 || connection._handling)
            {
                continue;
            }
            long allowed = (long)connection._options.FrameTimeout.TotalMilliseconds + (connection._pendingFrameBytes / MinFrameBytesPerMs);
            if (now - since > allowed)
            {
                string why = $"a frame from {connection.Peer} did not complete within {allowed / 1000.0:0.#} s (--frame-timeout and 1 s per MiB): a slow or stuck sender";
                connection._logger?.LogProtocolError(connection.Peer, why);
                connection.Close(why);
            }
        }
    }

    /// <summary>
    /// The handler sends a request whose answer will come back on this connection: call before sending it. Pair every
    /// call with <see cref="AnswerArrived"/> on the receive thread (in <see cref="IFrameHandler.OnFrame"/> or
    /// <see cref="IFrameHandler.EndDirect"/>); only requests the peer always answers may be counted.
    /// </summary>
    public void ExpectAnswer() => Interlocked.Increment(ref _awaited);

    /// <summary>An awaited answer arrived (receive thread only).</summary>
    public void AnswerArrived() => Interlocked.Decrement(ref _awaited);

    /// <summary>The receive thread starts handling a batch: frames queued meanwhile wait for <see cref="EndBatch"/>.</summary>
    private void BeginBatch()
    {
        lock (_sendLock)
        {
            _receiving = true;
        }
    }

    /// <summary>Ends a batch: flushes what was queued during it, unless another thread is already flushing.</summary>
    private void EndBatch()
    {
        _handler.OnBatchEnd(this);
        bool becomeFlusher;
        lock (_sendLock)
        {
            _receiving = false;
            becomeFlusher = !_flushing && _pendingLength > 0;
            _flushing |= becomeFlusher;
            Monitor.PulseAll(_sendLock); // a large frame may be waiting for the batch to end
        }
        if (becomeFlusher)
        {
            Flush();
        }
    }

    /// <summary>Closes the connection once; the handler's <see cref="IFrameHandler.OnClosed"/> runs with the first reason.</summary>
    public void Close(string reason)
    {
        if (Interlocked.CompareExchange(ref _closeReason, reason, null) is not null)
        {
            return;
        }
        s_open.TryRemove(this, out _);
        _stream.Shutdown();
        _stream.Dispose();
        lock (_sendLock)
        {
            Monitor.PulseAll(_sendLock);
        }
        Released?.Invoke();
        try
        {
            _handler.OnClosed(this, reason);
        }
        catch (Exception ex)
        {
            _logger?.LogOnClosedHandlerFailed(ex, Peer);
        }
    }

    public override string ToString() => Peer;
}

/// <summary>Room for one frame in a connection's send queue; holds the send lock until committed or disposed.</summary>
internal readonly ref struct FrameReservation
{
    private readonly Connection _connection;

    internal FrameReservation(Connection connection, Span<byte> span)
    {
        _connection = connection;
        Span = span;
    }

    public Span<byte> Span { get; }

    /// <summary>Queues the frame and, if no other thread is sending, sends it now.</summary>
    public void Commit() => _connection.CommitReservation();

    /// <summary>Drops the frame if it was not committed (after an exception while filling it).</summary>
    public void Dispose() => _connection.AbortReservation();
}
