using System.Buffers.Binary;
using System.Text;

namespace ParameterServer.Protocol;

/// <summary>Little-endian writer for control payloads (views, registrations). Control plane only: it may allocate.</summary>
internal sealed class PayloadWriter
{
    private byte[] _buffer = new byte[256];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, Length);

    private Span<byte> Take(int count)
    {
        if (Length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + count));
        }
        var span = _buffer.AsSpan(Length, count);
        Length += count;
        return span;
    }

    public void WriteByte(byte value) => Take(1)[0] = value;

    public void WriteBool(bool value) => WriteByte(value ? (byte)1 : (byte)0);

    public void WriteInt32(int value) => BinaryPrimitives.WriteInt32LittleEndian(Take(4), value);

    public void WriteInt64(long value) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), value);

    public void WriteUInt64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), value);

    public void WriteDouble(double value) => BinaryPrimitives.WriteDoubleLittleEndian(Take(8), value);

    public void WriteString(string value)
    {
        int count = Encoding.UTF8.GetByteCount(value);
        WriteInt32(count);
        Encoding.UTF8.GetBytes(value, Take(count));
    }
}

/// <summary>Reader matching <see cref="PayloadWriter"/>. Every read is bounds checked and throws <see cref="ProtocolException"/>.</summary>
internal ref struct PayloadReader
{
    private readonly ReadOnlySpan<byte> _source;
    private int _position;

    public PayloadReader(ReadOnlySpan<byte> source)
    {
        _source = source;
        _position = 0;
    }

    public readonly int Remaining => _source.Length - _position;

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > Remaining)
        {
            throw new ProtocolException($"payload truncated: needed {count} more bytes at offset {_position}, {Remaining} left");
        }
        var span = _source.Slice(_position, count);
        _position += count;
        return span;
    }

    public byte ReadByte() => Take(1)[0];

    public bool ReadBool() => ReadByte() != 0;

    public int ReadInt32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long ReadInt64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public double ReadDouble() => BinaryPrimitives.ReadDoubleLittleEndian(Take(8));

    /// <summary>Reads a count that must be at most <paramref name="max"/>, so a corrupt count cannot make the caller allocate.</summary>
    /// <summary>
    /// A count of elements that follow, each at least a byte: never more than the bytes left, so a lying count costs
    /// no memory (an array is sized by it before its elements are read).
    /// </summary>
    public int ReadCount(int max)
    {
        int count = ReadBounded(max);
        if (count > Remaining)
        {
            throw new ProtocolException($"count {count} of elements, but only {Remaining} bytes follow");
        }
        return count;
    }

    /// <summary>An int32 in [0, <paramref name="max"/>].</summary>
    public int ReadBounded(int max)
    {
        int value = ReadInt32();
        if (value < 0 || value > max)
        {
            throw new ProtocolException($"count {value} out of range [0, {max}]");
        }
        return value;
    }

    public string ReadString(int maxBytes = 1 << 20)
    {
        int count = ReadCount(maxBytes);
        return Encoding.UTF8.GetString(Take(count));
    }
}

/// <summary>A frame or payload that violates the protocol. The connection that produced it is closed; the process keeps serving.</summary>
internal sealed class ProtocolException(string message) : Exception(message);
