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
/// </summary>
internal sealed class Connection
{
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
    private string? _closeReason;
    private long _bytesSent;
    private long _bytesReceived;

    public Connection(Socket socket, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer)
    {
        _socket = socket;
        _handler = handler;
        _options = options;
        _logger = logger;
        Peer = peer;
        socket.NoDelay = true;
        _pending = ArrayPool<byte>.Shared.Rent(64 << 10);
    }

    /// <summary>Who is on the other end, for messages ("server 2 at 127.0.0.1:5001"). Updated once the peer identifies itself.</summary>
    public string Peer { get; set; }

    /// <summary>State owned by the handler (for example the peer's node id).</summary>
    public object? Tag { get; set; }

    public EndPoint? RemoteEndPoint => _socket.RemoteEndPoint;

    public bool IsClosed => Volatile.Read(ref _closeReason) is not null;

    public string? CloseReason => Volatile.Read(ref _closeReason);

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public int MaxFrameBytes => _options.MaxFrameBytes;

    /// <summary>Opens a connection, or throws <see cref="TransportException"/> naming the peer and the cause.</summary>
    public static Connection Connect(string host, int port, IFrameHandler handler, TransportOptions options, ILogger? logger, string peer)
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
        var connection = new Connection(socket, handler, options, logger, peer);
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

    internal void CommitReservation()
    {
        if (_reservedLength < 0)
        {
            return;
        }
        _pendingLength += _reservedLength;
        _reservedLength = -1;
        bool becomeFlusher = !_flushing;
        _flushing = true;
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
            try
            {
                int sent = 0;
                while (sent < length)
                {
                    sent += _socket.Send(batch, sent, length - sent, SocketFlags.None);
                }
                Interlocked.Add(ref _bytesSent, length);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                Close($"send failed: {ex.Message}");
            }
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
                int read = _socket.Receive(buffer, end, buffer.Length - end, SocketFlags.None);
                if (read == 0)
                {
                    Close("the peer closed the connection");
                    return;
                }
                end += read;
                Interlocked.Add(ref _bytesReceived, read);
                while (true)
                {
                    var status = FrameHeader.TryRead(buffer.AsSpan(start, end - start), _options.MaxFrameBytes, out var header, out var problem);
                    if (status == HeaderStatus.Incomplete)
                    {
                        break;
                    }
                    if (status == HeaderStatus.Corrupt)
                    {
                        _logger?.LogWarning("Closing connection from {Peer}: {Problem}", Peer, problem);
                        Close($"protocol error: {problem}");
                        return;
                    }
                    int frameLength = header.FrameLength;
                    if (end - start < frameLength)
                    {
                        if (frameLength > buffer.Length - start)
                        {
                            // Grow (or compact) so the whole frame fits; sizes were checked against MaxFrameBytes above.
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
                        break;
                    }
                    _handler.OnFrame(this, header, buffer.AsSpan(start + FrameHeader.Size, header.PayloadLength));
                    start += frameLength;
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
