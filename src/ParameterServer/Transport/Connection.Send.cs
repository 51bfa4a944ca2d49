using System.Buffers;
using System.Net.Sockets;
using ParameterServer.Protocol;

namespace ParameterServer.Transport;

/// <summary>Sending: reservations in the pooled batch buffer, write coalescing by whoever flushes, backpressure, and exclusive sends of large frames straight from the caller.</summary>
internal sealed partial class Connection
{
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

    /// <summary>
    /// Sends one frame whose bytes are already complete (control plane convenience). <paramref name="now"/>: flush it on
    /// this thread even while the receive thread handles a batch (heartbeats: that thread may be held up in its handler,
    /// and a heartbeat left for it to flush would make a live node look dead).
    /// </summary>
    public void Send(in FrameHeader header, ReadOnlySpan<byte> payload, bool now = false)
    {
        var frame = Reserve(FrameHeader.Size + payload.Length);
        _flushNow = now;
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
            _stream.WriteAll(data, more);
            Interlocked.Add(ref _bytesSent, length);
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or TimeoutException)
        {
            Close($"send failed: {ex.Message}");
            throw new TransportException($"connection to {Peer} is closed: {CloseReason}", ex);
        }
    }

    /// <summary>Sends what the kernel takes without blocking (for callers holding a lock); 0 when it takes nothing or the platform cannot.</summary>
    public int TrySendExclusiveNow(ReadOnlySpan<byte> data)
    {
        if (!_stream.SupportsPartialWrites)
        {
            return 0;
        }
        try
        {
            int sent = _stream.TryWriteNow(data);
            Interlocked.Add(ref _bytesSent, sent);
            return sent;
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or TimeoutException)
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
        if (!_stream.SupportsPartialWrites)
        {
            return 0;
        }
        try
        {
            int sent = _stream.WriteUntil(data, deadline);
            Interlocked.Add(ref _bytesSent, sent);
            return sent;
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or TimeoutException)
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
        bool becomeFlusher = !_flushing && (_flushNow || (!_receiving && Volatile.Read(ref _awaited) <= InlineSendDepth));
        _flushing |= becomeFlusher;
        _flushNow = false;
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
        _flushNow = false;
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
            _stream.Write(buffer.AsSpan(0, length));
            Interlocked.Add(ref _bytesSent, length);
            return true;
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or TimeoutException)
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
}
