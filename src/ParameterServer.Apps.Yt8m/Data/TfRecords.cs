using System.Buffers.Binary;
using System.Numerics;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Yt8m.Data;

/// <summary>
/// TFRecord framing: each record is <c>uint64 length</c>, <c>uint32 masked CRC32C of the length bytes</c>, the bytes,
/// <c>uint32 masked CRC32C of the bytes</c>, all little-endian; masked = ((crc &gt;&gt; 15) | (crc &lt;&lt; 17)) + 0xa282ead8.
/// </summary>
public static class TfRecords
{
    /// <summary>Records larger than this are refused as damage rather than allocated (a video-level record is ~5 KB).</summary>
    public const int MaxRecordBytes = 64 << 20;

    /// <summary>CRC-32C (Castagnoli) of <paramref name="data"/>, with the CPU's CRC32 instruction where it has one.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }
        return ~crc;
    }

    public static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    /// <summary>Appends one record to <paramref name="output"/>.</summary>
    public static void Write(Stream output, ReadOnlySpan<byte> record)
    {
        ArgumentNullException.ThrowIfNull(output);
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)record.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], MaskedCrc(header[..8]));
        output.Write(header);
        output.Write(record);
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, MaskedCrc(record));
        output.Write(footer);
    }
}

/// <summary>
/// Reads the records of one TFRecord file in order, checking both CRCs. A damaged record throws
/// <see cref="DataFormatException"/> naming the file and the record number (1-based); the reader cannot go on past a
/// damaged length, since the framing is lost there.
/// </summary>
public sealed class TfRecordReader : IDisposable
{
    private readonly Stream _stream;
    private readonly string _path;
    private byte[] _buffer = new byte[16 << 10];

    public TfRecordReader(string path)
    {
        _path = path;
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
    }

    /// <summary>The number of the record the last <see cref="TryRead"/> returned (1-based).</summary>
    public long RecordNumber { get; private set; }

    public string Path => _path;

    /// <summary>The next record's bytes (valid until the next call); false at the end of the file.</summary>
    public bool TryRead(out ReadOnlyMemory<byte> record)
    {
        record = default;
        Span<byte> header = stackalloc byte[12];
        int got = _stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        if (got == 0)
        {
            return false;
        }
        RecordNumber++;
        if (got < header.Length)
        {
            throw Damaged($"the file ends inside the record's header ({got} of 12 bytes)");
        }
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(header);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) != TfRecords.MaskedCrc(header[..8]))
        {
            throw Damaged($"the CRC of its length does not match (length field {length}): the file is damaged or not a TFRecord file");
        }
        if (length > TfRecords.MaxRecordBytes)
        {
            throw Damaged($"its length {length:N0} is over {TfRecords.MaxRecordBytes:N0} bytes");
        }
        int size = (int)length;
        if (_buffer.Length < size + 4)
        {
            _buffer = new byte[Math.Max(size + 4, _buffer.Length * 2)];
        }
        got = _stream.ReadAtLeast(_buffer.AsSpan(0, size + 4), size + 4, throwOnEndOfStream: false);
        if (got < size + 4)
        {
            throw Damaged($"the file ends inside the record ({got:N0} of {size + 4:N0} bytes after the header): truncated");
        }
        var bytes = _buffer.AsSpan(0, size);
        if (BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(size)) != TfRecords.MaskedCrc(bytes))
        {
            throw new BadRecordException(_path, RecordNumber, "the CRC of its bytes does not match: the record is damaged");
        }
        record = _buffer.AsMemory(0, size);
        return true;
    }

    private DataFormatException Damaged(string problem) => new($"{_path}: record {RecordNumber}: {problem}");

    public void Dispose() => _stream.Dispose();
}

/// <summary>A record whose framing is intact but whose content is bad: the reader can skip it (`--skip-bad-records`).</summary>
public sealed class BadRecordException(string path, long record, string problem) : Exception($"{path}: record {record}: {problem}")
{
    public string File { get; } = path;

    public long Record { get; } = record;
}
