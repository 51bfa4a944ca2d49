using System.Buffers;
using System.Net.Sockets;
using ParameterServer.Protocol;

namespace ParameterServer.Transport;

/// <summary>Receiving: the receive thread, whole frames parsed in place, large frames received in place or in chunks straight to the handler.</summary>
internal sealed partial class Connection
{
    /// <summary>Receives exactly target.Length bytes; false when the peer closed the connection first.</summary>
    private bool ReceiveExactly(Span<byte> target)
    {
        while (!target.IsEmpty)
        {
            int read = _stream.Read(target);
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
                if (Volatile.Read(ref _awaited) is > 0 and <= InlineSendDepth) // a shallow pipeline waits for its answer: deeper ones amortise the wake-up
                {
                    SpinForAnswer();
                }
                // Read ahead at most the initial buffer size: a large frame then starts near the front, and the rest
                // of it is read in place (ReceiveLarge) instead of being moved there after a deep read-ahead.
                int read = _stream.Read(buffer.AsSpan(end, Math.Min(buffer.Length - end, _options.ReceiveBufferBytes)));
                if (read == 0)
                {
                    Close("the peer closed the connection");
                    return;
                }
                end += read;
                Interlocked.Add(ref _bytesReceived, read);
                int before = start;
                _handling = true;
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
                    _handling = false;
                }
                if (start == end)
                {
                    start = end = 0;
                    Volatile.Write(ref _frameSinceMs, 0);
                }
                else if (start != before || Volatile.Read(ref _frameSinceMs) == 0)
                {
                    Volatile.Write(ref _frameSinceMs, Environment.TickCount64); // a new partial frame: its clock starts now
                }
            }
        }
        catch (ProtocolException ex)
        {
            _logger?.LogProtocolError(Peer, ex.Message);
            Close($"protocol error: {ex.Message}");
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException)
        {
            Close(_closeReason ?? $"receive failed: {ex.Message}");
        }
        catch (TransportException ex)
        {
            // The handler could not answer on some connection (this one or another): that one is gone.
            _logger?.LogConnectionBroken(Peer,ex.Message);
            Close(_closeReason ?? ex.Message);
        }
        catch (Exception ex)
        {
            _logger?.LogHandlerFailed(ex, Peer);
            Close($"internal error: {ex.Message}");
        }
    }

    /// <summary>
    /// How long a connection that awaits one or two answers polls for them before it blocks in the kernel: on an idle
    /// machine, waking a sleeping thread (and its vCPU) costs more than a small round trip takes (`pserver bench kv`,
    /// 4-byte round trips one at a time: p50 27-32 us polling, 43 us blocking, 1.8-2.2x the requests/s).
    /// </summary>
    internal static readonly long AnswerSpinTicks = System.Diagnostics.Stopwatch.Frequency * 50 / 1_000_000;

    /// <summary>An answer is awaited: polls for bytes for up to <see cref="AnswerSpinTicks"/>, then the read blocks as before.</summary>
    private void SpinForAnswer()
    {
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + AnswerSpinTicks;
        while (!_stream.BytesWaiting && System.Diagnostics.Stopwatch.GetTimestamp() < until && _closeReason is null)
        {
            Thread.Yield(); // lets a thread this core owes time to run; returns at once on an idle core
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
                _pendingFrameBytes = 0;
                return true;
            }
            if (status == HeaderStatus.Corrupt)
            {
                _logger?.LogProtocolError(Peer, problem);
                Close($"protocol error: {problem}");
                return false;
            }
            int frameLength = header.FrameLength;
            if (end - start < frameLength)
            {
                _pendingFrameBytes = frameLength;
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
        Volatile.Write(ref _frameSinceMs, Environment.TickCount64); // the frame's clock runs while this thread waits for it
        _handling = false;
        try
        {
            return ReceiveLargeFrame(ref buffer, ref start, ref end, header);
        }
        finally
        {
            _handling = true;
            Volatile.Write(ref _frameSinceMs, 0);
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
                StopFrameClock();
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
        StopFrameClock();
        _handler.OnFrame(this, header, buffer.AsSpan(start + FrameHeader.Size, header.PayloadLength));
        start = end = 0;
        if (buffer.Length > _options.ReceiveBufferBytes)
        {
            // Back to the initial size: a connection holds a large frame's bytes only while it receives one.
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = ArrayPool<byte>.Shared.Rent(_options.ReceiveBufferBytes);
        }
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
                int read = _stream.Read(buffer.AsSpan(0, Math.Min(chunk, remaining)));
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
            StopFrameClock();
            _handler.EndChunks(this, header, received);
        }
        start = end = 0;
        if (!received)
        {
            Close("the peer closed the connection");
        }
        return received;
    }

    /// <summary>The frame is in: what the handler does with it is not the sender's time.</summary>
    private void StopFrameClock()
    {
        _handling = true;
        Volatile.Write(ref _frameSinceMs, 0);
    }
}
