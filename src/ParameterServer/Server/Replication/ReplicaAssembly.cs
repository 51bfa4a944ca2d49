using System.Buffers;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Server.Replication;

/// <summary>
/// A replica's side of streamed forwards (<see cref="ForwardStream"/>) on one connection from a primary: puts each
/// stream's parts together (large parts are received straight into place) and, on its commit part, applies the
/// Replicate frame they make like any other. An aborted stream, or one whose connection closes, is discarded. Bounded:
/// a primary streams at most one push per worker connection at a time, each at most MaxFrameBytes.
/// </summary>
internal sealed class ReplicaAssembly(ChainReplicator replication, Answers answers, int self)
{
    private const int MaxStreams = 1024;

    private readonly Lock _lock = new(); // the receive thread, and OnClosed (which may run on another)
    private readonly Dictionary<ulong, Frame> _frames = new();
    private readonly Stack<Frame> _pool = new();
    private Frame? _direct; // the frame a large part is being received into

    private sealed class Frame
    {
        public byte[] Buffer = [];
        public int Length;
        public int Filled;
    }

    /// <summary>A part received whole.</summary>
    public void OnPart(Connection connection, in FrameHeader part, ReadOnlySpan<byte> payload)
    {
        Frame? frame;
        string? problem;
        lock (_lock)
        {
            problem = Place(part, connection.MaxFrameBytes, out frame);
            if (problem is null)
            {
                payload.CopyTo(frame!.Buffer.AsSpan(frame.Filled));
                frame.Filled += payload.Length;
            }
        }
        Finish(connection, part, frame, problem);
    }

    /// <summary>A large part: received straight into its frame's buffer (false: received whole, then <see cref="OnPart"/> says what is wrong).</summary>
    public bool TryBeginDirect(Connection connection, in FrameHeader part, out Span<byte> target)
    {
        lock (_lock)
        {
            if (Place(part, connection.MaxFrameBytes, out var frame) is not null)
            {
                target = default;
                return false;
            }
            _direct = frame;
            target = frame!.Buffer.AsSpan(frame.Filled, part.PayloadLength);
            return true;
        }
    }

    public void EndDirect(Connection connection, in FrameHeader part, bool received)
    {
        Frame? frame;
        lock (_lock)
        {
            frame = _direct;
            _direct = null;
            if (frame is null || !received || !_frames.ContainsKey(part.RequestId))
            {
                return; // the connection failed (Clear discards the frame)
            }
            frame.Filled += part.PayloadLength;
        }
        Finish(connection, part, frame, null);
    }

    /// <summary>Discards every frame (the connection closed).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            foreach (var frame in _frames.Values)
            {
                Recycle(frame);
            }
            _frames.Clear();
            _direct = null;
        }
    }

    /// <summary>Checks a part against its stream (creating the stream on its first part); null when it fits.</summary>
    private string? Place(in FrameHeader part, int maxFrameBytes, out Frame? frame)
    {
        long length = part.Timestamp;
        if (!_frames.TryGetValue(part.RequestId, out frame))
        {
            if ((ReplicatePartKind)part.Aux == ReplicatePartKind.Abort)
            {
                return null; // nothing of it arrived (or it was discarded): nothing to do
            }
            if (part.Round != 0 || length <= FrameHeader.Size || length > maxFrameBytes)
            {
                return $"a streamed forward {part.RequestId} begins at byte {part.Round} of {length} (frames are {FrameHeader.Size + 1} to {maxFrameBytes} bytes)";
            }
            if (_frames.Count >= MaxStreams)
            {
                return $"more than {MaxStreams} streamed forwards at once from one peer";
            }
            frame = _pool.TryPop(out var pooled) ? pooled : new Frame();
            frame.Buffer = ArrayPool<byte>.Shared.Rent((int)length);
            frame.Length = (int)length;
            frame.Filled = 0;
            _frames[part.RequestId] = frame;
        }
        if (part.Round != frame.Filled || length != frame.Length || (long)frame.Filled + part.PayloadLength > frame.Length)
        {
            string problem = $"streamed forward {part.RequestId}: a part of {part.PayloadLength} bytes at byte {part.Round} does not follow the {frame.Filled} bytes of {frame.Length} received";
            Forget(part.RequestId, frame);
            frame = null;
            return problem;
        }
        return null;
    }

    /// <summary>After a part is in: applies the frame on its commit, discards it on an abort, reports a part that did not fit.</summary>
    private void Finish(Connection connection, in FrameHeader part, Frame? frame, string? problem)
    {
        if (problem is not null)
        {
            answers.SendError(connection, part, ErrorCode.MalformedPayload, $"server {self}: {problem}");
            return;
        }
        var kind = (ReplicatePartKind)part.Aux;
        if (frame is null || kind == ReplicatePartKind.Data)
        {
            return;
        }
        try
        {
            if (kind != ReplicatePartKind.Commit)
            {
                return; // aborted: the primary did not apply the push (or forwards it whole)
            }
            var bytes = frame.Buffer.AsSpan(0, frame.Length);
            string? malformed = null;
            if (frame.Filled != frame.Length || FrameHeader.TryRead(bytes, connection.MaxFrameBytes, out var header, out malformed) != HeaderStatus.Ok
                || header.Type != MessageType.Replicate || header.FrameLength != frame.Length || (header.Flags & FrameFlags.Encoded) != 0)
            {
                answers.SendError(connection, part, ErrorCode.MalformedPayload,
                    $"server {self}: streamed forward {part.RequestId} does not make a plain Replicate frame ({malformed ?? $"{frame.Filled} of {frame.Length} bytes"})");
                return;
            }
            replication.HandleReplicate(connection, header, bytes[FrameHeader.Size..]);
        }
        finally
        {
            lock (_lock)
            {
                Forget(part.RequestId, frame);
            }
        }
    }

    private void Forget(ulong id, Frame frame)
    {
        if (_frames.Remove(id))
        {
            Recycle(frame);
        }
    }

    private void Recycle(Frame frame)
    {
        ArrayPool<byte>.Shared.Return(frame.Buffer);
        frame.Buffer = [];
        _pool.Push(frame);
    }
}
