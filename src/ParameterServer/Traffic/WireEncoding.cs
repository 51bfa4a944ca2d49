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
    public static void Encode(Slice slice, TableTraffic traffic, MessageType kind, int tableId, int width, ReadOnlySpan<bool> mask = default)
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
        bool masked = cacheKeys && kind == MessageType.Push && !mask.IsEmpty;
        if (!mask.IsEmpty && kind == MessageType.Push && !masked)
        {
            // Filtered, but its keys are not named by a cached list: the kept rows go as an ordinary smaller push.
            var section = ArrayPool<byte>.Shared.Rent(MaskBytes(count));
            try
            {
                WriteMask(slice, mask, section.AsSpan(0, MaskBytes(count)));
                Compact(slice, width, section.AsSpan(0, MaskBytes(count)));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(section);
            }
            frame = slice.Frame;
            FrameHeader.TryRead(frame, int.MaxValue, out header, out _);
            range = false;
            count = slice.Count;
            cacheKeys = traffic.KeyCaching && count >= TableTraffic.MinCachedKeys;
        }
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
            // A filtered push names its unfiltered keys: the list the batch's pull named too, and will name next epoch.
            var signature = KeySignature.Of(tableId, keys);
            cached = slice.Link.KeyCache.TryUse(signature);
            slice.WireSignature = cached ? signature : null;
            header.Flags |= cached ? FrameFlags.KeysCached : FrameFlags.StoreKeys;
        }
        int maskBytes = masked ? MaskBytes(count) : 0;
        int maxValueBytes = encodeValues ? ValueCodec.MaxEncodedBytes(slice.ValueCount, width) : slice.ValueCount * sizeof(float);
        var wire = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + keyBytes + KeySignature.Bytes + maskBytes + maxValueBytes + 8);
        int wireKeyBytes;
        if (cached)
        {
            slice.WireSignature!.Value.Write(wire.AsSpan(FrameHeader.Size));
            wireKeyBytes = KeySignature.Bytes;
        }
        else if (!range && (wireKeyBytes = KeyPacking.TryPack(keys, wire.AsSpan(FrameHeader.Size, keyBytes))) > 0)
        {
            header.Flags |= FrameFlags.PackedKeys; // a list sent in full (to be cached) goes as varint deltas
        }
        else
        {
            frame.AsSpan(FrameHeader.Size, keyBytes).CopyTo(wire.AsSpan(FrameHeader.Size));
            wireKeyBytes = keyBytes;
        }
        if (masked)
        {
            header.Flags |= FrameFlags.Masked;
            WriteMask(slice, mask, wire.AsSpan(FrameHeader.Size + wireKeyBytes, maskBytes));
            Compact(slice, width, wire.AsSpan(FrameHeader.Size + wireKeyBytes, maskBytes));
            frame = slice.Frame;
            count = slice.Count;
            keys = MemoryMarshal.Cast<byte, ulong>(frame.AsSpan(FrameHeader.Size, count * sizeof(ulong)));
            encodeValues &= count > 0;
        }
        int valueCount = slice.ValueCount;
        var plainValues = MemoryMarshal.Cast<byte, float>(frame.AsSpan(slice.HeadLength, valueCount * sizeof(float)));
        var wireValues = wire.AsSpan(FrameHeader.Size + wireKeyBytes + maskBytes);
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
        header.PayloadLength = wireKeyBytes + maskBytes + padded; // KeyCount stays the unfiltered count when masked
        header.Write(wire);
        slice.Wire = wire;
        slice.WireLength = FrameHeader.Size + header.PayloadLength;
    }

    /// <summary>Bytes of a mask section for <paramref name="keys"/> keys: [u32 present][u32 0][bitmap].</summary>
    private static int MaskBytes(int keys) => 8 + ((keys + 63) / 64 * 8);

    /// <summary>The slice's rows kept by the filter (<paramref name="mask"/> is by position in the call's keys).</summary>
    private static void WriteMask(Slice slice, ReadOnlySpan<bool> mask, Span<byte> section)
    {
        section.Clear();
        var bitmap = MemoryMarshal.Cast<byte, ulong>(section[8..]);
        int present = 0;
        for (int j = 0; j < slice.Count; j++)
        {
            if (mask[slice.Positions is { } positions ? positions[j] : slice.Start + j])
            {
                bitmap[j >> 6] |= 1UL << (j & 63);
                present++;
            }
        }
        MemoryMarshal.Write(section, present);
    }

    /// <summary>
    /// Drops the filtered rows from the slice's plain frame (a new pooled frame, always a key list): the plain frame is
    /// what a resend sends, and a filtered row must not be applied, not even as zero (a zero step moves momentum-based
    /// optimizers). <paramref name="section"/> is a mask section (<see cref="WriteMask"/>).
    /// </summary>
    private static void Compact(Slice slice, int width, ReadOnlySpan<byte> section)
    {
        var frame = slice.Frame;
        FrameHeader.TryRead(frame, int.MaxValue, out var header, out _);
        bool range = (header.Flags & FrameFlags.KeyRange) != 0;
        int count = slice.Count;
        var bitmap = MemoryMarshal.Cast<byte, ulong>(section[8..]);
        int present = MemoryMarshal.Read<int>(section);
        int rowBytes = width * sizeof(float);
        int length = FrameHeader.Size + (present * (sizeof(ulong) + rowBytes));
        var compacted = ArrayPool<byte>.Shared.Rent(length);
        var keysIn = range ? default : MemoryMarshal.Cast<byte, ulong>(frame.AsSpan(FrameHeader.Size, count * sizeof(ulong)));
        ulong first = range ? MemoryMarshal.Read<ulong>(frame.AsSpan(FrameHeader.Size)) : 0;
        var keysOut = MemoryMarshal.Cast<byte, ulong>(compacted.AsSpan(FrameHeader.Size, present * sizeof(ulong)));
        var valuesIn = frame.AsSpan(slice.HeadLength, count * rowBytes);
        var valuesOut = compacted.AsSpan(FrameHeader.Size + (present * sizeof(ulong)), present * rowBytes);
        int kept = 0;
        for (int j = 0; j < count; j++)
        {
            if ((bitmap[j >> 6] & (1UL << (j & 63))) == 0)
            {
                continue;
            }
            keysOut[kept] = range ? first + (ulong)j : keysIn[j];
            valuesIn.Slice(j * rowBytes, rowBytes).CopyTo(valuesOut[(kept * rowBytes)..]);
            if (slice.Positions is { } positions)
            {
                positions[kept] = positions[j];
            }
            kept++;
        }
        header.Flags &= ~FrameFlags.KeyRange;
        header.KeyCount = present;
        header.PayloadLength = length - FrameHeader.Size;
        header.Write(compacted);
        ArrayPool<byte>.Shared.Return(frame);
        slice.Frame = compacted;
        slice.Count = present;
        slice.ValueCount = present * width;
        slice.HeadLength = FrameHeader.Size + (present * sizeof(ulong));
        slice.FrameLength = length;
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
        bool masked = (header.Flags & FrameFlags.Masked) != 0;
        if (masked && (range || header.Type != MessageType.Push))
        {
            problem = "only a push with a key list can be masked";
            return DecodeResult.Malformed;
        }
        bool packed = (header.Flags & FrameFlags.PackedKeys) != 0;
        if (packed && (cached || range))
        {
            problem = "packed keys must be a key list sent in full";
            return DecodeResult.Malformed;
        }
        int wireKeyBytes = cached ? KeySignature.Bytes : packed ? KeyPacking.SectionLength(payload) : (int)DataPayload.KeySectionBytes(count, range);
        if (wireKeyBytes < 0 || (packed && (long)count * sizeof(ulong) > maxFrameBytes))
        {
            problem = $"packed key section of {count} keys does not fit its {payload.Length}-byte frame";
            return DecodeResult.Malformed;
        }
        int maskBytes = masked ? MaskBytes(count) : 0;
        if (payload.Length < wireKeyBytes + maskBytes)
        {
            problem = $"encoded frame of {payload.Length} bytes cannot hold the key section of {count} keys";
            return DecodeResult.Malformed;
        }
        int present = count;
        ReadOnlySpan<ulong> bitmap = default;
        if (masked)
        {
            var section = payload.Slice(wireKeyBytes, maskBytes);
            present = MemoryMarshal.Read<int>(section);
            bitmap = MemoryMarshal.Cast<byte, ulong>(section[8..]);
            int marked = 0;
            foreach (ulong word in bitmap)
            {
                marked += System.Numerics.BitOperations.PopCount(word);
            }
            if (present != marked || (count % 64 != 0 && bitmap[^1] >> (count % 64) != 0))
            {
                problem = $"masked frame says {present} of its {count} rows are present, its bitmap marks {marked} (or rows past the end)";
                return DecodeResult.Malformed;
            }
        }
        long plainKeyBytes = DataPayload.KeySectionBytes(present, range);
        long plainValueBytes = values ? (long)present * width * sizeof(float) : 0;
        if (FrameHeader.Size + plainKeyBytes + plainValueBytes > maxFrameBytes)
        {
            problem = $"encoded frame of {count} keys decodes to more than MaxFrameBytes ({maxFrameBytes})";
            return DecodeResult.Malformed;
        }
        ReadOnlySpan<ulong> fullKeys = default;
        if (cached && !cache.TryGet(KeySignature.Read(payload), count, out fullKeys))
        {
            return DecodeResult.Miss;
        }
        ulong[]? unpacked = null;
        if (packed)
        {
            unpacked = ArrayPool<ulong>.Shared.Rent(Math.Max(count, 1));
            try
            {
                KeyPacking.Unpack(payload[..wireKeyBytes], unpacked.AsSpan(0, count));
            }
            catch (ProtocolException ex)
            {
                ArrayPool<ulong>.Shared.Return(unpacked);
                problem = ex.Message;
                return DecodeResult.Malformed;
            }
        }
        try
        {
            return Finish(header, payload, cache, count, width, values, range, cached, masked, wireKeyBytes, maskBytes, present, bitmap, plainKeyBytes, plainValueBytes,
                unpacked is not null ? unpacked.AsSpan(0, count) : fullKeys, out plainHeader, out plain, out problem);
        }
        finally
        {
            if (unpacked is not null)
            {
                ArrayPool<ulong>.Shared.Return(unpacked);
            }
        }
    }

    private static DecodeResult Finish(in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache cache, int count, int width, bool values, bool range,
        bool cached, bool masked, int wireKeyBytes, int maskBytes, int present, ReadOnlySpan<ulong> bitmap, long plainKeyBytes, long plainValueBytes,
        ReadOnlySpan<ulong> fullKeys, out FrameHeader plainHeader, out byte[]? plain, out string? problem)
    {
        plainHeader = header;
        plain = null;
        problem = null;
        if (!cached && !range)
        {
            if (fullKeys.IsEmpty && count > 0)
            {
                fullKeys = MemoryMarshal.Cast<byte, ulong>(payload[..wireKeyBytes]);
            }
            if ((header.Flags & FrameFlags.StoreKeys) != 0)
            {
                cache.Store(KeySignature.Of(header.TableId, fullKeys), fullKeys);
            }
        }
        var rented = ArrayPool<byte>.Shared.Rent((int)(FrameHeader.Size + plainKeyBytes + plainValueBytes));
        var plainPayload = rented.AsSpan(FrameHeader.Size, (int)(plainKeyBytes + plainValueBytes));
        if (range)
        {
            payload[..wireKeyBytes].CopyTo(plainPayload);
        }
        else if (!masked)
        {
            MemoryMarshal.AsBytes(fullKeys).CopyTo(plainPayload);
        }
        else
        {
            var keysOut = MemoryMarshal.Cast<byte, ulong>(plainPayload[..(int)plainKeyBytes]);
            int next = 0;
            for (int w = 0; w < bitmap.Length; w++)
            {
                ulong word = bitmap[w];
                while (word != 0)
                {
                    keysOut[next++] = fullKeys[(w << 6) + System.Numerics.BitOperations.TrailingZeroCount(word)];
                    word &= word - 1;
                }
            }
        }
        var wireValues = payload[(wireKeyBytes + maskBytes)..];
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
        plainHeader.KeyCount = present;
        plainHeader.PayloadLength = plainPayload.Length;
        plain = rented;
        return DecodeResult.Ok;
    }
}
