using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns nothing: the wire form of a slice (cached keys, masks of filtered pushes, encoded values);
// the plain frame, with a pull's wish for its answer codec (FrameHeader.AnswerCodec), is cut by KeySlicer.

/// <summary>A worker's side of <see cref="WireEncoding"/>: gives a slice its wire form (cached keys, masks, encoded values).</summary>
internal static class SliceEncoding
{
    /// <summary>
    /// Gives a slice its wire form when caching or encoding applies (<see cref="Slice.Wire"/>). Lossy encodings rewrite
    /// the plain frame's values to what the servers will decode, so a resend of the plain frame sends the same.
    /// </summary>
    public static void Encode(Slice slice, TableTraffic traffic, MessageType kind, int tableId, int width, ReadOnlySpan<bool> mask = default)
    {
        var frame = slice.Frame;
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
            var section = ArrayPool<byte>.Shared.Rent(WireEncoding.MaskBytes(count));
            try
            {
                WriteMask(slice, mask, section.AsSpan(0, WireEncoding.MaskBytes(count)));
                Compact(slice, width, section.AsSpan(0, WireEncoding.MaskBytes(count)));
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
        int maskBytes = masked ? WireEncoding.MaskBytes(count) : 0;
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
}
