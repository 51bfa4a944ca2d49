using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;
using ParameterServer.Server.Sync;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// Answers to requests: acknowledgements, rows (from the store straight into the send buffer, or to the socket for large
/// dense answers), encoded rows, and errors. Stateless: it names this server and the view it answers under.
/// </summary>
internal sealed class Answers(LocalServer self, ViewGate gate)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;

    public void SendAcks(TableStore table, List<SyncAggregator.PendingAck> acks)
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
                _self.Log.LogAcknowledgeFailed(_self.Id, ack.Connection.Peer, ex.Message);
            }
        }
    }

    public void SendAck(Connection connection, in FrameHeader request)
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
    public void SendValues(Connection connection, in FrameHeader request, TableStore table, KeyList keys)
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

    public FrameHeader ResponseTo(in FrameHeader request) => new()
    {
        Type = MessageType.Response,
        SenderId = _self.Id,
        RequestId = request.RequestId,
        Timestamp = request.Timestamp,
        ViewNumber = _gate.Current?.Number ?? 0,
        TableId = request.TableId,
        RowWidth = request.RowWidth > 0 ? request.RowWidth : 1,
        ElementType = WireElementType.Float32,
        Round = request.Round,
    };

    public void SendError(Connection connection, in FrameHeader request, ErrorCode code, string message)
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
            _self.Log.LogErrorReplyFailed(_self.Id, connection.Peer, ex.Message);
        }
    }
}
