using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ParameterServer.Protocol;

namespace ParameterServer.Transport;

/// <summary>
/// One TCP connection to a peer node. Receiving: a dedicated thread reads into a pooled buffer, parses whole
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
internal sealed class Connection
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

    private readonly Socket _socket;
    private readonly IFrameHandler _handler;
    private readonly TransportOptions _options;
    private readonly ILogger? _logger;
    private readonly object _sendLock = new();
    private byte[] _pending;
    private int _pendingLength;
    private byte[]? _spare;
    private bool _flushing;
    private int _reservedLength = -1; // >= 0 while a FrameReservation holds _sendLock
    private bool _receiving; // the receive thread is handling a batch of frames and will flush what is queued after it
    private int _awaited; // answers the handler still awaits on this connection (see ExpectAnswer)
    private string? _closeReason;
    private long _bytesSent;
    private long _bytesReceived;

    public Connection(Socket socket, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer, TrafficMeter? meter = null)
    {
        _socket = socket;
        _handler = handler;
        _options = options;
        _logger = logger;
        Traffic = meter?.Add(peer) ?? new PeerTraffic(peer);
        _peer = peer;
        socket.NoDelay = true;
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

    public EndPoint? RemoteEndPoint => _socket.RemoteEndPoint;

    public bool IsClosed => Volatile.Read(ref _closeReason) is not null;

    public string? CloseReason => Volatile.Read(ref _closeReason);

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public int MaxFrameBytes => _options.MaxFrameBytes;

    /// <summary>Opens a connection, or throws <see cref="TransportException"/> naming the peer and the cause.</summary>
    public static Connection Connect(string host, int port, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer, TrafficMeter? meter = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            var address = IPAddress.TryParse(host, out var ip) ? ip : Dns.GetHostAddresses(host).First(a => a.AddressFamily == AddressFamily.InterNetwork);
            // A blocking connect on a helper thread, not ConnectAsync: on Linux a socket that was used
            // asynchronously stays non-blocking, and every later synchronous Send/Receive then allocates.
            var connect = Task.Run(() => socket.Connect(new IPEndPoint(address, port)));
            if (!((IAsyncResult)connect).AsyncWaitHandle.WaitOne(options.ConnectTimeout))
            {
                socket.Dispose();
                throw new OperationCanceledException();
            }
            connect.GetAwaiter().GetResult(); // rethrows the SocketException itself
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            socket.Dispose();
            string cause = ex switch
            {
                SocketException se => se.SocketErrorCode == SocketError.ConnectionRefused ? "connection refused (nothing listens there)" : se.Message,
                OperationCanceledException => $"no answer within {options.ConnectTimeout.TotalSeconds:0.#} s",
                _ => ex.Message,
            };
            throw new TransportException($"cannot connect to {peer} at {host}:{port}: {cause}", ex);
        }
        var connection = new Connection(socket, handler, options, logger, peer, meter);
        connection.Start();
        return connection;
    }

    public void Start()
    {
        var thread = new Thread(ReceiveLoop) { IsBackground = true, Name = "ps-recv" };
        thread.Start();
    }

    /// <summary>
    /// Reserves <paramref name="frameLength"/> bytes in the send queue and holds the send lock until the
    /// reservation is committed or disposed. Fill the span completely, then call <see cref="FrameReservation.Commit"/>.
    /// </summary>
    public FrameReservation Reserve(int frameLength)
    {
        if (frameLength < FrameHeader.Size || frameLength > _options.MaxFrameBytes)
        {
            throw new TransportException($"frame of {frameLength} bytes to {Peer} is outside [{FrameHeader.Size}, {_options.MaxFrameBytes}] (MaxFrameBytes)");
        }
        Monitor.Enter(_sendLock);
        try
        {
            long deadline = Environment.TickCount64 + (long)_options.SendTimeout.TotalMilliseconds;
            while (_pendingLength > 0 && _pendingLength + frameLength > _options.SendQueueHighWaterBytes && _closeReason is null)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new TransportException($"send queue to {Peer} stayed full ({_pendingLength} bytes) for {_options.SendTimeout.TotalSeconds:0.#} s: the peer is not reading");
                }
                if (!_flushing)
                {
                    // The queue was left for a receive thread to flush after its batch (maybe this one): flush it now.
                    _flushing = true;
                    Monitor.Exit(_sendLock);
                    try
                    {
                        Flush();
                    }
                    finally
                    {
                        Monitor.Enter(_sendLock);
                    }
                    continue;
                }
                Monitor.Wait(_sendLock, (int)Math.Min(left, int.MaxValue));
            }
            if (_closeReason is { } reason)
            {
                throw new TransportException($"connection to {Peer} is closed: {reason}");
            }
            if (_pendingLength + frameLength > _pending.Length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_pending.Length * 2, _pendingLength + frameLength));
                _pending.AsSpan(0, _pendingLength).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_pending);
                _pending = larger;
            }
            _reservedLength = frameLength;
            return new FrameReservation(this, _pending.AsSpan(_pendingLength, frameLength));
        }
        catch
        {
            Monitor.Exit(_sendLock);
            throw;
        }
    }

    /// <summary>Sends one frame whose bytes are already complete (control plane convenience).</summary>
    public void Send(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var frame = Reserve(FrameHeader.Size + payload.Length);
        try
        {
            var h = header;
            h.PayloadLength = payload.Length;
            h.Write(frame.Span);
            payload.CopyTo(frame.Span[FrameHeader.Size..]);
            frame.Commit();
        }
        finally
        {
            frame.Dispose();
        }
    }

    /// <summary>Sends one complete, already encoded frame.</summary>
    public void SendFrame(ReadOnlySpan<byte> frame)
    {
        var reservation = Reserve(frame.Length);
        try
        {
            frame.CopyTo(reservation.Span);
            reservation.Commit();
        }
        finally
        {
            reservation.Dispose();
        }
    }

    /// <summary>
    /// Sends one complete, already encoded frame of <paramref name="length"/> bytes. A large frame is sent from
    /// <paramref name="frame"/> itself on the calling thread, after what was queued before it, and the call returns
    /// when the kernel has taken all of it; a small one (or any, while another thread is sending) is copied into the batch.
    /// </summary>
    public void SendFrame(byte[] frame, int length)
    {
        if (length >= LargeFrameBytes && length <= _options.MaxFrameBytes && TryBeginExclusiveSend())
        {
            try
            {
                SendExclusive(frame.AsSpan(0, length));
                Traffic.CountOut(frame[3], length);
            }
            finally
            {
                EndExclusiveSend();
            }
            return;
        }
        SendFrame(frame.AsSpan(0, length));
    }

    /// <summary>
    /// Makes the calling thread the connection's only sender, after sending (blocking) what was queued before.
    /// Returns false when another thread is sending: queue a copy instead (never wait for it). After true, send with
    /// <see cref="SendExclusive"/> / <see cref="TrySendExclusiveNow"/> and always call <see cref="EndExclusiveSend"/>.
    /// </summary>
    public bool TryBeginExclusiveSend()
    {
        byte[]? queued = null;
        int queuedLength = 0;
        lock (_sendLock)
        {
            if (_closeReason is { } reason)
            {
                throw new TransportException($"connection to {Peer} is closed: {reason}");
            }
            if (_flushing)
            {
                return false;
            }
            _flushing = true;
            if (_pendingLength > 0)
            {
                queued = _pending;
                queuedLength = _pendingLength;
                _pending = _spare ?? ArrayPool<byte>.Shared.Rent(64 << 10);
                _spare = null;
                _pendingLength = 0;
                Monitor.PulseAll(_sendLock);
            }
        }
        if (queued is not null)
        {
            bool sent = SendAll(queued, queuedLength);
            Recycle(queued);
            if (!sent)
            {
                EndExclusiveSend();
                throw new TransportException($"connection to {Peer} is closed: {CloseReason}");
            }
        }
        return true;
    }

    /// <summary>Sends all bytes (blocking). <paramref name="more"/>: more of the same frame follows at once (one packet, not two).</summary>
    public void SendExclusive(ReadOnlySpan<byte> data, bool more = false)
    {
        int length = data.Length;
        try
        {
            if (NativeSend.IsSupported)
            {
                NativeSend.SendAll(_socket, data, more);
            }
            else
            {
                while (!data.IsEmpty)
                {
                    data = data[_socket.Send(data, SocketFlags.None)..];
                }
            }
            Interlocked.Add(ref _bytesSent, length);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close($"send failed: {ex.Message}");
            throw new TransportException($"connection to {Peer} is closed: {CloseReason}", ex);
        }
    }

    /// <summary>Sends what the kernel takes without blocking (for callers holding a lock); 0 when it takes nothing or the platform cannot.</summary>
    public int TrySendExclusiveNow(ReadOnlySpan<byte> data)
    {
        if (!NativeSend.IsSupported)
        {
            return 0;
        }
        try
        {
            int sent = NativeSend.TrySendNow(_socket, data);
            Interlocked.Add(ref _bytesSent, sent);
            return sent;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close($"send failed: {ex.Message}");
            throw new TransportException($"connection to {Peer} is closed: {CloseReason}", ex);
        }
    }

    /// <summary>
    /// Sends, waiting for socket buffer room at most until <paramref name="deadline"/> (a Stopwatch timestamp), so a
    /// caller holding a lock is never held up by a slow reader for longer than it chose. Returns the bytes sent.
    /// </summary>
    public int SendExclusiveUntil(ReadOnlySpan<byte> data, long deadline)
    {
        if (!NativeSend.IsSupported)
        {
            return 0;
        }
        try
        {
            int sent = NativeSend.SendUntil(_socket, data, deadline);
            Interlocked.Add(ref _bytesSent, sent);
            return sent;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close($"send failed: {ex.Message}");
            throw new TransportException($"connection to {Peer} is closed: {CloseReason}", ex);
        }
    }

    /// <summary>Ends exclusive sending: sends what other threads queued meanwhile, then lets them send again.</summary>
    public void EndExclusiveSend() => Flush();

    internal void CommitReservation()
    {
        if (_reservedLength < 0)
        {
            return;
        }
        Traffic.CountOut(_pending[_pendingLength + 3], _reservedLength);
        _pendingLength += _reservedLength;
        _reservedLength = -1;
        // A receive thread mid-batch, or one that awaits answers, flushes after its (next) batch: it checks under this
        // lock before it blocks again, and every awaited answer ends in a batch.
        bool becomeFlusher = !_flushing && !_receiving && Volatile.Read(ref _awaited) <= InlineSendDepth;
        _flushing |= becomeFlusher;
        Monitor.Exit(_sendLock);
        if (becomeFlusher)
        {
            Flush();
        }
    }

    internal void AbortReservation()
    {
        // Only the thread holding the reservation may abort it; after Commit this is a no-op.
        if (_reservedLength < 0 || !Monitor.IsEntered(_sendLock))
        {
            return;
        }
        _reservedLength = -1;
        Monitor.Exit(_sendLock);
    }

    private void Flush()
    {
        while (true)
        {
            byte[] batch;
            int length;
            lock (_sendLock)
            {
                if (_pendingLength == 0 || _closeReason is not null)
                {
                    _flushing = false;
                    Monitor.PulseAll(_sendLock);
                    return;
                }
                batch = _pending;
                length = _pendingLength;
                _pending = _spare ?? ArrayPool<byte>.Shared.Rent(64 << 10);
                _spare = null;
                _pendingLength = 0;
                Monitor.PulseAll(_sendLock); // room for waiting senders
            }
            SendAll(batch, length);
            Recycle(batch);
        }
    }

    /// <summary>Writes all bytes or closes the connection; returns false when it failed.</summary>
    private bool SendAll(byte[] buffer, int length)
    {
        try
        {
            int sent = 0;
            while (sent < length)
            {
                sent += _socket.Send(buffer, sent, length - sent, SocketFlags.None);
            }
            Interlocked.Add(ref _bytesSent, length);
            return true;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close($"send failed: {ex.Message}");
            return false;
        }
    }

    private void Recycle(byte[] batch)
    {
        lock (_sendLock)
        {
            if (_spare is null)
            {
                _spare = batch;
            }
            else
            {
                ArrayPool<byte>.Shared.Return(batch);
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

    /// <summary>Receives exactly target.Length bytes; false when the peer closed the connection first.</summary>
    private bool ReceiveExactly(Span<byte> target)
    {
        while (!target.IsEmpty)
        {
            int read = _socket.Receive(target, SocketFlags.None);
            if (read == 0)
            {
                return false;
            }
            Interlocked.Add(ref _bytesReceived, read);
            target = target[read..];
        }
        return true;
    }

    private void ReceiveLoop()
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(_options.ReceiveBufferBytes);
        int start = 0;
        int end = 0;
        try
        {
            while (_closeReason is null)
            {
                if (buffer.Length - end < 4096 && start > 0)
                {
                    // Move the partial frame to the front to make room.
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    end -= start;
                    start = 0;
                }
                // Read ahead at most the initial buffer size: a large frame then starts near the front, and the rest
                // of it is read in place (ReceiveLarge) instead of being moved there after a deep read-ahead.
                int read = _socket.Receive(buffer, end, Math.Min(buffer.Length - end, _options.ReceiveBufferBytes), SocketFlags.None);
                if (read == 0)
                {
                    Close("the peer closed the connection");
                    return;
                }
                end += read;
                Interlocked.Add(ref _bytesReceived, read);
                BeginBatch();
                try
                {
                    if (!HandleFrames(ref buffer, ref start, ref end))
                    {
                        return;
                    }
                }
                finally
                {
                    EndBatch();
                }
                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (ProtocolException ex)
        {
            _logger?.LogWarning("Closing connection from {Peer}: {Problem}", Peer, ex.Message);
            Close($"protocol error: {ex.Message}");
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close(_closeReason ?? $"receive failed: {ex.Message}");
        }
        catch (TransportException ex)
        {
            // The handler could not answer on some connection (this one or another): that one is gone.
            _logger?.LogDebug("Closing connection from {Peer}: {Message}", Peer, ex.Message);
            Close(_closeReason ?? ex.Message);
        }
        catch (Exception ex)
        {
            _logger?.LogError(ex, "Handler failed on a frame from {Peer}; closing the connection", Peer);
            Close($"internal error: {ex.Message}");
        }
    }

    /// <summary>Hands every whole frame in buffer[start, end) to the handler; false when the connection was closed.</summary>
    private bool HandleFrames(ref byte[] buffer, ref int start, ref int end)
    {
        while (true)
        {
            var status = FrameHeader.TryRead(buffer.AsSpan(start, end - start), _options.MaxFrameBytes, out var header, out var problem);
            if (status == HeaderStatus.Incomplete)
            {
                return true;
            }
            if (status == HeaderStatus.Corrupt)
            {
                _logger?.LogWarning("Closing connection from {Peer}: {Problem}", Peer, problem);
                Close($"protocol error: {problem}");
                return false;
            }
            int frameLength = header.FrameLength;
            if (end - start < frameLength)
            {
                if (frameLength >= LargeFrameBytes)
                {
                    return ReceiveLarge(ref buffer, ref start, ref end, header);
                }
                if (frameLength > buffer.Length - start)
                {
                    // Grow (or compact) so the whole frame fits; sizes were checked against MaxFrameBytes above.
                    MakeRoom(ref buffer, ref start, ref end, frameLength);
                }
                return true;
            }
            Traffic.CountIn((byte)header.Type, frameLength);
            _handler.OnFrame(this, header, buffer.AsSpan(start + FrameHeader.Size, header.PayloadLength));
            start += frameLength;
        }
    }

    private static void MakeRoom(ref byte[] buffer, ref int start, ref int end, int frameLength)
    {
        var target = frameLength > buffer.Length ? ArrayPool<byte>.Shared.Rent(frameLength) : buffer;
        buffer.AsSpan(start, end - start).CopyTo(target);
        if (!ReferenceEquals(target, buffer))
        {
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = target;
        }
        end -= start;
        start = 0;
    }

    /// <summary>
    /// The rest of a large frame: read exactly up to its end (no read-ahead that would have to be moved later), into
    /// the handler's own memory when it offers some, else into the receive buffer. Leaves the buffer empty.
    /// </summary>
    private bool ReceiveLarge(ref byte[] buffer, ref int start, ref int end, in FrameHeader header)
    {
        EndBatch(); // what earlier frames of the batch queued goes out before this thread blocks again
        Traffic.CountIn((byte)header.Type, header.FrameLength);
        try
        {
            return ReceiveLargeFrame(ref buffer, ref start, ref end, header);
        }
        finally
        {
            BeginBatch();
        }
    }

    private bool ReceiveLargeFrame(ref byte[] buffer, ref int start, ref int end, in FrameHeader header)
    {
        if (start > 0)
        {
            buffer.AsSpan(start, end - start).CopyTo(buffer); // at most one read-ahead: cheap, and leaves room for a prefix
            end -= start;
            start = 0;
        }
        int prefix = Math.Min(header.PayloadLength, ChunkedPrefixBytes);
        if (end - FrameHeader.Size < prefix && !ReceiveExactly(buffer.AsSpan(end, prefix - (end - FrameHeader.Size))))
        {
            Close("the peer closed the connection");
            return false;
        }
        end = Math.Max(end, FrameHeader.Size + prefix);
        int have = end - FrameHeader.Size; // payload bytes already here
        if (have < header.PayloadLength && _handler.TryBeginChunks(this, header, buffer.AsSpan(FrameHeader.Size, have)))
        {
            return ReceiveChunks(buffer, header, header.PayloadLength - have, ref start, ref end);
        }
        if (_handler.TryBeginDirect(this, header, out var target))
        {
            bool received = false;
            try
            {
                buffer.AsSpan(start + FrameHeader.Size, have).CopyTo(target);
                received = ReceiveExactly(target[have..]);
            }
            finally
            {
                _handler.EndDirect(this, header, received);
            }
            start = end = 0;
            if (!received)
            {
                Close("the peer closed the connection");
            }
            return received;
        }
        int frameLength = header.FrameLength;
        if (frameLength > buffer.Length - start)
        {
            MakeRoom(ref buffer, ref start, ref end, frameLength);
        }
        if (!ReceiveExactly(buffer.AsSpan(end, frameLength - (end - start))))
        {
            Close("the peer closed the connection");
            return false;
        }
        _handler.OnFrame(this, header, buffer.AsSpan(start + FrameHeader.Size, header.PayloadLength));
        start = end = 0;
        return true;
    }

    /// <summary>Receives the rest of a chunked frame piece by piece into the front of the buffer, handing each piece over.</summary>
    private bool ReceiveChunks(byte[] buffer, in FrameHeader header, int remaining, ref int start, ref int end)
    {
        bool received = false;
        try
        {
            int chunk = Math.Min(buffer.Length, ChunkBytes);
            while (remaining > 0)
            {
                int read = _socket.Receive(buffer, 0, Math.Min(chunk, remaining), SocketFlags.None);
                if (read == 0)
                {
                    break;
                }
                Interlocked.Add(ref _bytesReceived, read);
                remaining -= read;
                _handler.OnChunk(this, header, buffer.AsSpan(0, read));
            }
            received = remaining == 0;
        }
        finally
        {
            _handler.EndChunks(this, header, received);
        }
        start = end = 0;
        if (!received)
        {
            Close("the peer closed the connection");
        }
        return received;
    }

    /// <summary>Closes the connection once; the handler's <see cref="IFrameHandler.OnClosed"/> runs with the first reason.</summary>
    public void Close(string reason)
    {
        if (Interlocked.CompareExchange(ref _closeReason, reason, null) is not null)
        {
            return;
        }
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // already gone
        }
        _socket.Close();
        lock (_sendLock)
        {
            Monitor.PulseAll(_sendLock);
        }
        try
        {
            _handler.OnClosed(this, reason);
        }
        catch (Exception ex)
        {
            _logger?.LogError(ex, "OnClosed handler failed for {Peer}", Peer);
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
