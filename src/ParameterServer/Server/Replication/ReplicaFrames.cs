using System.Runtime.InteropServices;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Server.Store;

namespace ParameterServer.Server.Replication;

/// <summary>
/// The frames a primary sends its copies: a push's keys whose chains include one copy, with their values, plain or
/// (when the push came encoded) with packed keys and its lossless value encoding. The encoding of the push being
/// served is kept per receive thread (<see cref="ForwardCodec"/>), set while an encoded frame is served.
/// </summary>
internal static class ReplicaFrames
{
    /// <summary>Forwards the keys whose chains include <paramref name="slot"/>, with their values, as one Replicate frame.</summary>
    public static void SendReplicate(int self, uint viewNumber, Connection peer, ulong id, in FrameHeader request, TableStore table, KeyList keys, ReadOnlySpan<float> values, ReadOnlySpan<int> successors, int copies, int slot)
    {
        int count = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            count += successors.Slice(i * copies, copies).Contains(slot) ? 1 : 0;
        }
        int width = table.Width;
        var header = ReplicateHeader(self, viewNumber, id, request, count, width);
        header.PayloadLength = checked(count * (sizeof(ulong) + (width * sizeof(float))));
        int length = header.FrameLength;
        if (t_forwardCodec is { } codec && count >= TableTraffic.MinCachedKeys)
        {
            SendEncodedReplicate(peer, header, codec, keys, values, successors, copies, slot, width);
            return;
        }
        if (length >= Connection.LargeFrameBytes)
        {
            // A large forward is built in a pooled buffer of its own and sent from it: the connection's batch buffer
            // would otherwise grow to the frame's size (and be replaced) for every push.
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
            try
            {
                FillReplicate(buffer.AsSpan(0, length), header, keys, values, successors, copies, slot, width);
                peer.SendFrame(buffer, length);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
            return;
        }
        using var frame = peer.Reserve(length);
        FillReplicate(frame.Span, header, keys, values, successors, copies, slot, width);
        frame.Commit();
    }

    /// <summary>The header of a Replicate frame forwarding <paramref name="count"/> keys of <paramref name="request"/> (PayloadLength left to the caller).</summary>
    public static FrameHeader ReplicateHeader(int self, uint viewNumber, ulong id, in FrameHeader request, int count, int width)
    {
        // Aux: the worker; Round: the worker's request id. A resend also carries what it replaces: Timestamp holds the
        // predecessor's request id and ViewNumber the view it was cut by (a replica does not route, so needs no view).
        bool resend = (request.Flags & FrameFlags.Resend) != 0;
        return new FrameHeader
        {
            Type = MessageType.Replicate,
            Flags = resend ? FrameFlags.Resend : FrameFlags.None,
            SenderId = self,
            RequestId = id,
            Timestamp = resend ? request.Round : request.Timestamp,
            ViewNumber = resend ? request.Aux : viewNumber,
            TableId = request.TableId,
            KeyCount = count,
            RowWidth = width,
            ElementType = request.ElementType,
            Aux = (uint)request.SenderId,
            Round = (long)request.RequestId,
        };
    }

    /// <summary>The value encoding of the push being served when it came encoded (set on its receive thread), else null.</summary>
    [ThreadStatic]
    public static CodecSpec? t_forwardCodec;

    /// <summary>
    /// How to forward a push that came encoded: its stages (zero suppression, lz), and its quantization only when that is
    /// fp16 or bf16, whose decoded values encode back to the same bits. Top-k and 1-bit are not: their values go whole.
    /// </summary>
    public static CodecSpec ForwardCodec(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if ((header.Flags & FrameFlags.Compressed) == 0)
        {
            return new CodecSpec(CodecStages.None, Quantization.None);
        }
        // The value section starts after the key section; its prefix names the stages and quantization.
        int keyBytes = (header.Flags & FrameFlags.KeysCached) != 0 ? KeySignature.Bytes
            : (header.Flags & FrameFlags.PackedKeys) != 0 ? Math.Max(0, KeyPacking.SectionLength(payload))
            : (int)DataPayload.KeySectionBytes(header.KeyCount, (header.Flags & FrameFlags.KeyRange) != 0);
        int maskBytes = (header.Flags & FrameFlags.Masked) != 0 ? 8 + ((header.KeyCount + 63) / 64 * 8) : 0;
        var section = payload[Math.Min(payload.Length, keyBytes + maskBytes)..];
        if (section.Length < 2)
        {
            return new CodecSpec(CodecStages.None, Quantization.None);
        }
        var quantization = (Quantization)section[1];
        return new CodecSpec((CodecStages)section[0] & (CodecStages.ZeroSuppress | CodecStages.Lz),
            quantization is Quantization.Float16 or Quantization.BFloat16 ? quantization : Quantization.None);
    }

    /// <summary>A forward with packed keys and encoded values (lossless: the replica decodes what this server applied).</summary>
    private static void SendEncodedReplicate(Connection peer, FrameHeader header, CodecSpec codec, KeyList keys, ReadOnlySpan<float> values,
        ReadOnlySpan<int> successors, int copies, int slot, int width)
    {
        int count = header.KeyCount;
        int length = header.FrameLength;
        var plain = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
        int keyBytes = count * sizeof(ulong);
        var wire = System.Buffers.ArrayPool<byte>.Shared.Rent(FrameHeader.Size + keyBytes + ValueCodec.MaxEncodedBytes(count * width, width) + 8);
        try
        {
            FillReplicate(plain.AsSpan(0, length), header, keys, values, successors, copies, slot, width);
            var plainKeys = MemoryMarshal.Cast<byte, ulong>(plain.AsSpan(FrameHeader.Size, keyBytes));
            var plainValues = MemoryMarshal.Cast<byte, float>(plain.AsSpan(FrameHeader.Size + keyBytes, count * width * sizeof(float)));
            int wireKeyBytes = KeyPacking.TryPack(plainKeys, wire.AsSpan(FrameHeader.Size, keyBytes));
            if (wireKeyBytes > 0)
            {
                header.Flags |= FrameFlags.PackedKeys;
            }
            else
            {
                plain.AsSpan(FrameHeader.Size, keyBytes).CopyTo(wire.AsSpan(FrameHeader.Size));
                wireKeyBytes = keyBytes;
            }
            int valueBytes = codec.IsNone ? 0 : ValueCodec.Encode(codec, plainValues, width, wire.AsSpan(FrameHeader.Size + wireKeyBytes));
            if (valueBytes > 0)
            {
                header.Flags |= FrameFlags.Compressed;
            }
            else
            {
                MemoryMarshal.AsBytes(plainValues).CopyTo(wire.AsSpan(FrameHeader.Size + wireKeyBytes));
                valueBytes = plainValues.Length * sizeof(float);
            }
            int padded = (valueBytes + 7) & ~7;
            wire.AsSpan(FrameHeader.Size + wireKeyBytes + valueBytes, padded - valueBytes).Clear();
            header.PayloadLength = wireKeyBytes + padded;
            if (header.FrameLength >= length)
            {
                peer.SendFrame(plain, length); // encoding did not pay
                return;
            }
            header.Write(wire);
            peer.SendFrame(wire, header.FrameLength);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(plain);
            System.Buffers.ArrayPool<byte>.Shared.Return(wire);
        }
    }

    private static void FillReplicate(Span<byte> frame, in FrameHeader header, KeyList keys, ReadOnlySpan<float> values, ReadOnlySpan<int> successors, int copies, int slot, int width)
    {
        int count = header.KeyCount;
        header.Write(frame);
        var keyOut = MemoryMarshal.Cast<byte, ulong>(frame.Slice(FrameHeader.Size, count * sizeof(ulong)));
        var valueOut = MemoryMarshal.Cast<byte, float>(frame[(FrameHeader.Size + (count * sizeof(ulong)))..]);
        if (count == keys.Count)
        {
            // Every key goes to this copy (the common case: one block per push): the values in one copy.
            for (int i = 0; i < count; i++)
            {
                keyOut[i] = keys[i];
            }
            values[..(count * width)].CopyTo(valueOut);
            return;
        }
        int n = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            if (successors.Slice(i * copies, copies).Contains(slot))
            {
                keyOut[n] = keys[i];
                values.Slice(i * width, width).CopyTo(valueOut.Slice(n * width, width));
                n++;
            }
        }
    }
}
