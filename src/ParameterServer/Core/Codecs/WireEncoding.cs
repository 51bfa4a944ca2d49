using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Protocol;

namespace ParameterServer.Core.Codecs;

/// <summary>
/// Data frames with cached keys and encoded values: written by workers (Client.SliceEncoding), turned back into plain
/// frames by servers (<see cref="Decode"/>) before anything else looks at them, so the servers' checks, handlers,
/// replication and deduplication see exactly what an unencoded frame would have carried.
/// </summary>
internal static class WireEncoding
{
    /// <summary>Bytes of a mask section for <paramref name="keys"/> keys: [u32 present][u32 0][bitmap].</summary>
    public static int MaskBytes(int keys) => 8 + ((keys + 63) / 64 * 8);

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
        // Bounds first, so that no size below can overflow: the plain frame must fit MaxFrameBytes anyway.
        if (count < 0 || width <= 0 || count > maxFrameBytes / sizeof(ulong) || width > maxFrameBytes / sizeof(float) || !ElementTypes.IsKnown(header.ElementType))
        {
            problem = $"encoded frame with {count} keys of width {width} ({header.ElementType}): not a valid data frame under the {maxFrameBytes}-byte frame limit";
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
        long keySectionBytes = cached ? KeySignature.Bytes : packed ? KeyPacking.SectionLength(payload) : DataPayload.KeySectionBytes(count, range);
        int wireKeyBytes = keySectionBytes <= payload.Length ? (int)keySectionBytes : -1;
        // A packed key takes at least a byte: more keys than bytes is a lie that would only cost memory.
        if (wireKeyBytes < 0 || (packed && count > wireKeyBytes))
        {
            problem = $"the key section of {count} keys does not fit its {payload.Length}-byte frame";
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
