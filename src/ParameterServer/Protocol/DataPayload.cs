using System.Runtime.InteropServices;

namespace ParameterServer.Protocol;

/// <summary>
/// Layout of Push / Pull / PushPull payloads and of value responses (see <see cref="FrameHeader"/>):
/// a key section, then keyCount x rowWidth 4-byte words (an 8-byte element takes two). Everything is read in place
/// from the receive buffer.
/// </summary>
internal static class DataPayload
{
    public const int RangeKeySectionBytes = 16;

    public static long KeySectionBytes(int keyCount, bool keyRange) => keyRange ? RangeKeySectionBytes : (long)keyCount * sizeof(ulong);

    public static long ValueSectionBytes(int keyCount, int rowWidth) => (long)keyCount * rowWidth * ElementTypes.WordBytes;

    public static bool CarriesKeys(MessageType type) => type is MessageType.Push or MessageType.Pull or MessageType.PushPull or MessageType.Replicate or MessageType.Refill;

    public static bool CarriesValues(MessageType type) => type is MessageType.Push or MessageType.PushPull or MessageType.Replicate or MessageType.Refill;

    /// <summary>Checks that the header's counts match the payload length, with no overflow. Returns a reason or null.</summary>
    public static string? Validate(in FrameHeader header)
    {
        if (header.KeyCount < 0)
        {
            return $"negative key count {header.KeyCount}";
        }
        if (header.RowWidth <= 0)
        {
            return $"row width must be positive, got {header.RowWidth}";
        }
        if (!ElementTypes.IsKnown(header.ElementType))
        {
            return $"unknown element type {(byte)header.ElementType}";
        }
        bool range = (header.Flags & FrameFlags.KeyRange) != 0;
        long expected = KeySectionBytes(header.KeyCount, range)
            + (CarriesValues(header.Type) ? ValueSectionBytes(header.KeyCount, header.RowWidth) : 0);
        if (expected != header.PayloadLength)
        {
            return $"payload is {header.PayloadLength} bytes but {header.KeyCount} keys of width {header.RowWidth} ({header.ElementType}) need {expected}";
        }
        return null;
    }

    /// <summary>The keys of a validated data frame, without copying.</summary>
    public static KeyList Keys(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if ((header.Flags & FrameFlags.KeyRange) != 0)
        {
            var pair = MemoryMarshal.Cast<byte, ulong>(payload[..RangeKeySectionBytes]);
            return KeyList.Range(pair[0], header.KeyCount);
        }
        return KeyList.Of(MemoryMarshal.Cast<byte, ulong>(payload[..(header.KeyCount * sizeof(ulong))]));
    }

    /// <summary>The value section of a validated data frame, without copying.</summary>
    public static ReadOnlySpan<byte> Values(in FrameHeader header, ReadOnlySpan<byte> payload)
        => payload[(int)KeySectionBytes(header.KeyCount, (header.Flags & FrameFlags.KeyRange) != 0)..];
}

/// <summary>Sorted keys of a frame: a span of explicit keys or a contiguous range. Allocation free.</summary>
internal readonly ref struct KeyList
{
    private readonly ReadOnlySpan<ulong> _keys;
    private readonly ulong _first;
    private readonly bool _isRange;

    public int Count { get; }

    private KeyList(ReadOnlySpan<ulong> keys, ulong first, int count, bool isRange)
    {
        _keys = keys;
        _first = first;
        Count = count;
        _isRange = isRange;
    }

    public static KeyList Of(ReadOnlySpan<ulong> keys) => new(keys, 0, keys.Length, false);

    public static KeyList Range(ulong first, int count) => new(default, first, count, true);

    public bool IsRange => _isRange;

    public ulong this[int index] => _isRange ? _first + (ulong)index : _keys[index];

    /// <summary>Index of the first key that is not strictly greater than its predecessor, or -1 when sorted and unique.</summary>
    public int FindUnsorted()
    {
        if (_isRange)
        {
            return Count > 0 && _first + (ulong)(Count - 1) < _first ? Count - 1 : -1; // a range that wraps past 2^64
        }
        for (int i = 1; i < _keys.Length; i++)
        {
            if (_keys[i] <= _keys[i - 1])
            {
                return i;
            }
        }
        return -1;
    }
}
