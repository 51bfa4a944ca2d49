using System.Buffers.Binary;

namespace ParameterServer.Protocol;

/// <summary>
/// A sorted key list as varint deltas (<see cref="FrameFlags.PackedKeys"/>): [u32 packed bytes][u32 0][varints, padded
/// to 8]. The first varint is the first key, each next one the gap to the key before (at least 1). Feature ids of a
/// minibatch sit close together, so a key takes 1-3 bytes instead of 8; hashed 64-bit keys do not pack and are sent plain.
/// </summary>
internal static class KeyPacking
{
    private const int HeadBytes = 8;

    /// <summary>The room <see cref="TryPack"/> needs: the plain section's size (it packs only when that is smaller).</summary>
    public static int MaxBytes(int count) => count * sizeof(ulong);

    /// <summary>Packs <paramref name="keys"/> (ascending, distinct) when that is smaller than 8 bytes a key; returns the section's length, or 0.</summary>
    public static int TryPack(ReadOnlySpan<ulong> keys, Span<byte> destination)
    {
        int budget = Math.Min(destination.Length, MaxBytes(keys.Length));
        int at = HeadBytes;
        ulong previous = 0;
        for (int i = 0; i < keys.Length; i++)
        {
            if (at + 10 > budget) // a varint takes at most 10 bytes
            {
                return 0;
            }
            ulong value = i == 0 ? keys[0] : keys[i] - previous;
            previous = keys[i];
            while (value >= 0x80)
            {
                destination[at++] = (byte)(value | 0x80);
                value >>= 7;
            }
            destination[at++] = (byte)value;
        }
        int padded = (at + 7) & ~7;
        if (padded >= budget)
        {
            return 0;
        }
        destination[at..padded].Clear();
        BinaryPrimitives.WriteInt32LittleEndian(destination, at - HeadBytes);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], 0);
        return padded;
    }

    /// <summary>The length of the packed section at the start of <paramref name="source"/> (header and padding included), or -1.</summary>
    public static int SectionLength(ReadOnlySpan<byte> source)
    {
        if (source.Length < HeadBytes)
        {
            return -1;
        }
        int packed = BinaryPrimitives.ReadInt32LittleEndian(source);
        long padded = (HeadBytes + (long)packed + 7) & ~7L;
        return packed < 0 || padded > source.Length ? -1 : (int)padded;
    }

    /// <summary>Unpacks exactly <paramref name="keys"/>.Length keys; throws <see cref="ProtocolException"/> when the section does not hold them, ascending.</summary>
    public static void Unpack(ReadOnlySpan<byte> source, Span<ulong> keys)
    {
        int length = SectionLength(source);
        if (length < 0)
        {
            throw new ProtocolException($"packed key section of {source.Length} bytes is shorter than it says");
        }
        var bytes = source[HeadBytes..(HeadBytes + BinaryPrimitives.ReadInt32LittleEndian(source))];
        int at = 0;
        ulong previous = 0;
        for (int i = 0; i < keys.Length; i++)
        {
            ulong value = 0;
            int shift = 0;
            while (true)
            {
                if (at >= bytes.Length || shift > 63)
                {
                    throw new ProtocolException($"packed key section ends (or a varint runs past 64 bits) at key {i} of {keys.Length}");
                }
                byte b = bytes[at++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    break;
                }
                shift += 7;
            }
            if (i > 0 && (value == 0 || previous + value < previous))
            {
                throw new ProtocolException($"packed keys must ascend: key {i} repeats or wraps past 2^64");
            }
            previous = i == 0 ? value : previous + value;
            keys[i] = previous;
        }
        if (at != bytes.Length)
        {
            throw new ProtocolException($"packed key section holds {bytes.Length - at} bytes past its {keys.Length} keys");
        }
    }
}
