using System.Buffers.Binary;

namespace ParameterServer.Protocol;

/// <summary>
/// The fixed header in front of every frame. All integers are little-endian.
/// <code>
/// offset size field
///  0     2    magic        0x50 0x53 ("PS")
///  2     1    version      1
///  3     1    type         MessageType
///  4     2    flags        FrameFlags
///  6     2    headerLength 64; a later version may grow it, readers skip what they do not know
///  8     4    payloadLength bytes after the header
/// 12     4    senderId     node id of the sender (-1 before it has one)
/// 16     8    requestId    per sender, increasing; (senderId, requestId) names a request, so resends can be deduplicated
/// 24     8    timestamp    the worker's clock for this call
/// 32     4    viewNumber   the cluster view the sender routed with
/// 36     4    tableId
/// 40     4    keyCount
/// 44     4    rowWidth     4-byte words per key (values per key; two per 8-byte value)
/// 48     2    errorCode    ErrorCode, responses only
/// 50     1    elementType  WireElementType of the values
/// 51     1    answerCodec  a pull's wish for its answer's value encoding (CodecSpec.ToAnswerByte), else 0
/// 52     4    aux          message specific (role in Register, arrived count in Barrier, ...)
/// 56     8    round        per table push sequence of the sender (sync aggregation), or barrier sequence
/// 64          payload
/// </code>
/// Data payloads: the key section (keyCount x u64 sorted ascending, or [u64 first][u64 count] with
/// <see cref="FrameFlags.KeyRange"/>), then keyCount x rowWidth values. Both sections are multiples of
/// 8 bytes from an 8-aligned header, so a receiver can cast them in place.
/// </summary>
internal struct FrameHeader
{
    public const int Size = 64;
    public const ushort Magic = 0x5350; // bytes 'P','S' little-endian
    public const byte CurrentVersion = 1;

    public MessageType Type;
    public FrameFlags Flags;
    public int PayloadLength;
    public int SenderId;
    public ulong RequestId;
    public long Timestamp;
    public uint ViewNumber;
    public int TableId;
    public int KeyCount;
    public int RowWidth;
    public ErrorCode Error;
    public WireElementType ElementType;
    public byte AnswerCodec;
    public uint Aux;
    public long Round;

    public readonly int FrameLength => Size + PayloadLength;

    public readonly void Write(Span<byte> destination)
    {
        if (destination.Length < Size)
        {
            throw new ArgumentException($"frame header needs {Size} bytes, got {destination.Length}", nameof(destination));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(destination, Magic);
        destination[2] = CurrentVersion;
        destination[3] = (byte)Type;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], Size);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], PayloadLength);
        BinaryPrimitives.WriteInt32LittleEndian(destination[12..], SenderId);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], RequestId);
        BinaryPrimitives.WriteInt64LittleEndian(destination[24..], Timestamp);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[32..], ViewNumber);
        BinaryPrimitives.WriteInt32LittleEndian(destination[36..], TableId);
        BinaryPrimitives.WriteInt32LittleEndian(destination[40..], KeyCount);
        BinaryPrimitives.WriteInt32LittleEndian(destination[44..], RowWidth);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[48..], (ushort)Error);
        destination[50] = (byte)ElementType;
        destination[51] = AnswerCodec;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[52..], Aux);
        BinaryPrimitives.WriteInt64LittleEndian(destination[56..], Round);
    }

    /// <summary>
    /// Parses and validates a header. Returns <see cref="HeaderStatus.Incomplete"/> when fewer than
    /// <see cref="Size"/> bytes are there; any other non-OK status means the stream is corrupt and the
    /// connection must be closed (<paramref name="problem"/> says why). Nothing is allocated.
    /// </summary>
    public static HeaderStatus TryRead(ReadOnlySpan<byte> source, int maxFrameBytes, out FrameHeader header, out string? problem)
    {
        header = default;
        problem = null;
        if (source.Length < Size)
        {
            return HeaderStatus.Incomplete;
        }
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (magic != Magic)
        {
            problem = $"bad magic 0x{magic:x4} (expected 0x{Magic:x4}): the peer does not speak the ParameterServer.NET protocol";
            return HeaderStatus.Corrupt;
        }
        if (source[2] != CurrentVersion)
        {
            problem = $"protocol version {source[2]} is not supported (this node speaks version {CurrentVersion})";
            return HeaderStatus.Corrupt;
        }
        ushort headerLength = BinaryPrimitives.ReadUInt16LittleEndian(source[6..]);
        if (headerLength != Size)
        {
            problem = $"header length {headerLength} is not {Size}";
            return HeaderStatus.Corrupt;
        }
        int payloadLength = BinaryPrimitives.ReadInt32LittleEndian(source[8..]);
        // Checked before anything is allocated for the payload.
        if (payloadLength < 0 || (long)payloadLength + Size > maxFrameBytes)
        {
            problem = $"frame of {(long)(uint)payloadLength + Size} bytes exceeds the limit of {maxFrameBytes} bytes (raise MaxFrameBytes on both sides if this is intended)";
            return HeaderStatus.Corrupt;
        }
        var flags = (FrameFlags)BinaryPrimitives.ReadUInt16LittleEndian(source[4..]);
        if ((flags & ~FrameFlags.Known) != 0)
        {
            problem = $"unsupported frame flags 0x{(ushort)flags:x4}";
            return HeaderStatus.Corrupt;
        }
        header.Type = (MessageType)source[3];
        header.Flags = flags;
        header.PayloadLength = payloadLength;
        header.SenderId = BinaryPrimitives.ReadInt32LittleEndian(source[12..]);
        header.RequestId = BinaryPrimitives.ReadUInt64LittleEndian(source[16..]);
        header.Timestamp = BinaryPrimitives.ReadInt64LittleEndian(source[24..]);
        header.ViewNumber = BinaryPrimitives.ReadUInt32LittleEndian(source[32..]);
        header.TableId = BinaryPrimitives.ReadInt32LittleEndian(source[36..]);
        header.KeyCount = BinaryPrimitives.ReadInt32LittleEndian(source[40..]);
        header.RowWidth = BinaryPrimitives.ReadInt32LittleEndian(source[44..]);
        header.Error = (ErrorCode)BinaryPrimitives.ReadUInt16LittleEndian(source[48..]);
        header.ElementType = (WireElementType)source[50];
        header.AnswerCodec = source[51];
        header.Aux = BinaryPrimitives.ReadUInt32LittleEndian(source[52..]);
        header.Round = BinaryPrimitives.ReadInt64LittleEndian(source[56..]);
        return HeaderStatus.Ok;
    }
}

internal enum HeaderStatus
{
    Ok,
    Incomplete,
    Corrupt,
}
