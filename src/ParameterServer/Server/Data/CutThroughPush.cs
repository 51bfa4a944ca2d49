using System.Buffers;
using ParameterServer.Protocol;
using ParameterServer.Server.Replication;
using ParameterServer.Transport;

namespace ParameterServer.Server.Data;

/// <summary>
/// Receives a large replicated push while passing it on: each piece that arrives goes down the chain at once
/// (<see cref="ForwardStream"/>), so the copies receive it while the worker still sends it, instead of after. The push
/// itself is kept whole and served like any other once in (checked, applied once, acknowledged after every copy),
/// except that its copies are only told to commit what they already have. One per worker connection.
/// </summary>
internal sealed class CutThroughPush(DataRequests requests, ChainReplicator replication, int self)
{
    /// <summary>Smaller pushes are forwarded whole: the overlap would not pay for the parts.</summary>
    public const int MinPayloadBytes = 128 << 10;

    /// <summary>Bytes gathered before they go on as one part.</summary>
    private const int PartBytes = 64 << 10;

    private readonly ForwardStream _stream = new(self);
    private byte[] _payload = [];
    private int _length;
    private int _filled;
    private int _forwarded;

    public bool TryBegin(Connection connection, in FrameHeader header, ReadOnlySpan<byte> first)
    {
        if (header.Type != MessageType.Push || header.PayloadLength < MinPayloadBytes || (header.Flags & (FrameFlags.Encoded | FrameFlags.Resend)) != 0)
        {
            return false;
        }
        long keyBytes = DataPayload.KeySectionBytes(header.KeyCount, (header.Flags & FrameFlags.KeyRange) != 0);
        if (keyBytes > first.Length || header.KeyCount <= 0)
        {
            return false;
        }
        // Anything wrong is answered by the whole-frame path, which reports it.
        if (requests.Check(connection, header, first, out var view, out var table, out var keys) is not null || table.Aggregator is not null
            || view.ChainLength <= 1 || !replication.TryOpenStream(_stream, view, header, table, keys))
        {
            return false;
        }
        requests.CountRequest();
        _payload = ArrayPool<byte>.Shared.Rent(header.PayloadLength);
        _length = header.PayloadLength;
        _filled = 0;
        _forwarded = 0;
        Add(first);
        return true;
    }

    public void Add(ReadOnlySpan<byte> chunk)
    {
        chunk.CopyTo(_payload.AsSpan(_filled));
        _filled += chunk.Length;
        if (_filled - _forwarded >= PartBytes || _filled == _length)
        {
            _stream.Send(_payload.AsSpan(_forwarded, _filled - _forwarded));
            _forwarded = _filled;
        }
    }

    public void End(Connection connection, in FrameHeader header, bool received)
    {
        try
        {
            if (received)
            {
                ChainReplicator.t_stream = _stream; // ForwardApplied commits it
                using (PsTracing.StartRequest(header))
                {
                    requests.HandleData(connection, header, _payload.AsSpan(0, _length));
                }
            }
        }
        finally
        {
            ChainReplicator.t_stream = null;
            if (_stream.View is not null)
            {
                _stream.Close(); // refused, applied before, or the worker's connection failed: the copies discard it
            }
            ArrayPool<byte>.Shared.Return(_payload);
            _payload = [];
        }
    }
}
