using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Protocol;
using ParameterServer.Worker;

namespace ParameterServer.Traffic;

/// <summary>
/// Data frames with cached keys and encoded values: written by workers (<see cref="Encode"/>), turned back into plain
/// frames by servers (<see cref="Decode"/>) before anything else looks at them, so the servers' checks, handlers,
/// replication and deduplication see exactly what an unencoded frame would have carried.
/// </summary>
internal static class WireEncoding
{
    /// <summary>
    /// Gives a slice its wire form when caching or encoding applies (<see cref="Slice.Wire"/>). Lossy encodings rewrite
    /// the plain frame's values to what the servers will decode, so a resend of the plain frame sends the same.
    /// </summary>
    public static void Encode(Slice slice, TableTraffic traffic, MessageType kind, int tableId, int width)
    {
        var frame = slice.Frame;
        if (kind == MessageType.Pull && traffic.AnswerByte != 0)
        {
            frame[51] = traffic.AnswerByte; // FrameHeader.AnswerCodec, also for resends of the plain frame
        }
        if (FrameHeader.TryRead(frame, int.MaxValue, out var header, out _) != HeaderStatus.Ok)
        {
            return;
        }
        bool range = (header.Flags & FrameFlags.KeyRange) != 0;
        int count = slice.Count;
        bool cacheKeys = traffic.KeyCaching && !range && count >= TableTraffic.MinCachedKeys;
        bool encodeValues = kind != MessageType.Pull && !traffic.Codec.IsNone && count > 0;
        if (!cacheKeys && !encodeValues)
        {
            return;
        }
        int keyBytes = slice.HeadLength - FrameHeader.Size;
        var keys = range ? default : MemoryMarshal.Cast<byte, ulong>(frame.AsSpan(FrameHeader.Size, keyBytes));
        bool cached = false;
        if (cacheKeys)
        {
            var signature = KeySignature.Of(tableId, keys);
            cached = slice.Link.KeyCache.TryUse(signature);
            slice.WireSignature = cached ? signature : null;
            header.Flags |= cached ? FrameFlags.KeysCached : FrameFlags.StoreKeys;
        }
        int wireKeyBytes = cached ? KeySignature.Bytes : keyBytes;
        int valueCount = slice.ValueCount;
        int maxValueBytes = encodeValues ? ValueCodec.MaxEncodedBytes(valueCount, width) : valueCount * sizeof(float);
        var wire = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + wireKeyBytes + maxValueBytes + 8);
        if (cached)
        {
            slice.WireSignature!.Value.Write(wire.AsSpan(FrameHeader.Size));
        }
        else
        {
            frame.AsSpan(FrameHeader.Size, keyBytes).CopyTo(wire.AsSpan(FrameHeader.Size));
        }
        var plainValues = MemoryMarshal.Cast<byte, float>(frame.AsSpan(slice.HeadLength, valueCount * sizeof(float)));
        var wireValues = wire.AsSpan(FrameHeader.Size + wireKeyBytes);
        int valueBytes;
        if (!encodeValues)
        {
            MemoryMarshal.AsBytes(plainValues).CopyTo(wireValues);
            valueBytes = valueCount * sizeof(float);
        }
        else if (traffic.Residuals is { } residuals)
        {
            ulong first = range ? MemoryMarshal.Read<ulong>(frame.AsSpan(FrameHeader.Size)) : 0;
            var intended = ArrayPool<float>.Shared.Rent(valueCount);
            try
            {
                var meant = intended.AsSpan(0, valueCount);
                plainValues.CopyTo(meant);
                residuals.AddTo(keys, first, count, meant);
                valueBytes = ValueCodec.Encode(traffic.Codec, meant, width, wireValues);
                ValueCodec.Decode(wireValues[..valueBytes], width, plainValues);
                residuals.Keep(keys, first, count, meant, plainValues);
            }
            finally
            {
                ArrayPool<float>.Shared.Return(intended);
            }
            header.Flags |= FrameFlags.Compressed;
        }
        else
        {
            valueBytes = ValueCodec.Encode(traffic.Codec, plainValues, width, wireValues);
            header.Flags |= FrameFlags.Compressed;
        }
        int padded = (valueBytes + 7) & ~7; // keeps the next frame in a receive buffer 8-aligned
        wireValues[valueBytes..padded].Clear();
        header.PayloadLength = wireKeyBytes + padded;
        header.Write(wire);
        slice.Wire = wire;
        slice.WireLength = FrameHeader.Size + header.PayloadLength;
    }

    /// <summary>What <see cref="Decode"/> found.</summary>
    internal enum DecodeResult
    {
        Ok,
        /// <summary>The frame names its keys by a signature this connection's cache does not hold.</summary>
        Miss,
        Malformed,
    }

    /// <summary>
    /// Turns an encoded Push / Pull / PushPull into a plain frame in <paramref name="plain"/> (rented here, return it);
    /// stores the keys of a <see cref="FrameFlags.StoreKeys"/> frame in <paramref name="cache"/>.
    /// </summary>
    public static DecodeResult Decode(in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache cache, int maxFrameBytes,
        out FrameHeader plainHeader, out byte[]? plain, out string? problem)
    {
        plainHeader = header;
        plain = null;
        problem = null;
        int count = header.KeyCount;
        int width = header.RowWidth;
        bool values = DataPayload.CarriesValues(header.Type);
        if (count < 0 || width <= 0 || ElementTypes.SizeOf(header.ElementType) != sizeof(float))
        {
            problem = $"encoded frame with {count} keys of width {width} ({header.ElementType}): only float32 rows can be encoded";
            return DecodeResult.Malformed;
        }
        bool range = (header.Flags & FrameFlags.KeyRange) != 0;
        bool cached = (header.Flags & FrameFlags.KeysCached) != 0;
        if (cached && ((header.Flags & FrameFlags.StoreKeys) != 0 || range))
        {
            problem = "a frame cannot name its keys by signature and carry them too";
            return DecodeResult.Malformed;
        }
        int wireKeyBytes = cached ? KeySignature.Bytes : (int)DataPayload.KeySectionBytes(count, range);
        long plainKeyBytes = DataPayload.KeySectionBytes(count, range);
        long plainValueBytes = values ? (long)count * width * sizeof(float) : 0;
        if (payload.Length < wireKeyBytes || FrameHeader.Size + plainKeyBytes + plainValueBytes > maxFrameBytes)
        {
            problem = $"encoded frame of {payload.Length} bytes cannot hold the key section of {count} keys, or decodes to more than MaxFrameBytes";
            return DecodeResult.Malformed;
        }
        ReadOnlySpan<ulong> cachedKeys = default;
        if (cached && !cache.TryGet(KeySignature.Read(payload), count, out cachedKeys))
        {
            return DecodeResult.Miss;
        }
        var rented = ArrayPool<byte>.Shared.Rent((int)(FrameHeader.Size + plainKeyBytes + plainValueBytes));
        var plainPayload = rented.AsSpan(FrameHeader.Size, (int)(plainKeyBytes + plainValueBytes));
        if (cached)
        {
            MemoryMarshal.AsBytes(cachedKeys).CopyTo(plainPayload);
        }
        else
        {
            payload[..wireKeyBytes].CopyTo(plainPayload);
            if ((header.Flags & FrameFlags.StoreKeys) != 0)
            {
                var keys = MemoryMarshal.Cast<byte, ulong>(payload[..wireKeyBytes]);
                cache.Store(KeySignature.Of(header.TableId, keys), keys);
            }
        }
        var wireValues = payload[wireKeyBytes..];
        var plainValues = plainPayload[(int)plainKeyBytes..];
        try
        {
            if (!values)
            {
                // a pull: no values
            }
            else if ((header.Flags & FrameFlags.Compressed) != 0)
            {
                ValueCodec.Decode(wireValues, width, MemoryMarshal.Cast<byte, float>(plainValues));
            }
            else if (wireValues.Length >= plainValues.Length)
            {
                wireValues[..plainValues.Length].CopyTo(plainValues);
            }
            else
            {
                throw new ProtocolException($"value section of {wireValues.Length} bytes is shorter than {count} rows of width {width}");
            }
        }
        catch (ProtocolException ex)
        {
            ArrayPool<byte>.Shared.Return(rented);
            problem = ex.Message;
            return DecodeResult.Malformed;
        }
        plainHeader.Flags &= ~FrameFlags.Encoded;
        plainHeader.PayloadLength = plainPayload.Length;
        plain = rented;
        return DecodeResult.Ok;
    }
}
