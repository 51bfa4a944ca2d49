using System.Buffers.Binary;
using System.IO.Compression;

namespace ParameterServer.Nn.Data;

/// <summary>A file in the idx format is not what it should be; the message names the file and what is wrong.</summary>
public sealed class IdxFormatException(string message) : FormatException(message);

/// <summary>
/// An n-dimensional array read from an idx file (the format of MNIST): its shape and its values as bytes, as stored.
/// </summary>
public sealed class IdxArray
{
    internal IdxArray(string path, int[] shape, byte[] values)
    {
        Path = path;
        Shape = shape;
        Values = values;
    }

    /// <summary>The file it was read from.</summary>
    public string Path { get; }

    /// <summary>The dimensions, outermost first (for MNIST images: count, rows, columns).</summary>
    public IReadOnlyList<int> Shape { get; }

    /// <summary>The values, row-major, one byte each.</summary>
    public byte[] Values { get; }

    /// <summary>The number of items along the first dimension.</summary>
    public int Count => Shape[0];

    /// <summary>Values per item (the product of the other dimensions).</summary>
    public int ItemSize => Shape.Skip(1).Aggregate(1, (a, b) => a * b);
}

/// <summary>
/// Reads idx files of unsigned bytes (type 0x08, what MNIST holds), gzip-compressed or not (detected from the first
/// bytes): the magic number 0x00 0x00 TYPE DIMENSIONS, then each dimension as a big-endian int32, then the values.
/// </summary>
public static class IdxFile
{
    private const byte UnsignedByte = 0x08;

    /// <summary>Reads the whole file; throws <see cref="IdxFormatException"/> naming the file when it is not a well-formed idx file of bytes.</summary>
    public static IdxArray Read(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> gzipMagic = stackalloc byte[2];
        int got = file.ReadAtLeast(gzipMagic, 2, throwOnEndOfStream: false);
        file.Position = 0;
        bool gzip = got == 2 && gzipMagic[0] == 0x1f && gzipMagic[1] == 0x8b;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        try
        {
            return Read(stream, path);
        }
        catch (InvalidDataException ex)
        {
            throw new IdxFormatException($"{path}: the gzip data is damaged ({ex.Message})");
        }
    }

    private static IdxArray Read(Stream stream, string path)
    {
        Span<byte> magic = stackalloc byte[4];
        if (stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4)
        {
            throw new IdxFormatException($"{path}: too short for an idx header (4 bytes of magic number)");
        }
        if (magic[0] != 0 || magic[1] != 0)
        {
            throw new IdxFormatException($"{path}: not an idx file (magic number {Convert.ToHexString(magic)}; an idx file starts with 0000 then the type and the number of dimensions)");
        }
        if (magic[2] != UnsignedByte)
        {
            throw new IdxFormatException($"{path}: holds values of idx type 0x{magic[2]:X2}; only unsigned bytes (0x08, as in MNIST) are read");
        }
        int dimensions = magic[3];
        if (dimensions < 1)
        {
            throw new IdxFormatException($"{path}: has no dimensions");
        }
        var shape = new int[dimensions];
        Span<byte> size = stackalloc byte[4];
        long total = 1;
        for (int d = 0; d < dimensions; d++)
        {
            if (stream.ReadAtLeast(size, 4, throwOnEndOfStream: false) < 4)
            {
                throw new IdxFormatException($"{path}: the header ends before dimension {d + 1} of {dimensions}");
            }
            shape[d] = BinaryPrimitives.ReadInt32BigEndian(size);
            total *= shape[d];
            if (shape[d] < 0 || total > Array.MaxLength)
            {
                throw new IdxFormatException($"{path}: dimension {d + 1} is {shape[d]}: the array would not fit in memory");
            }
        }
        var values = new byte[total];
        int read = stream.ReadAtLeast(values, values.Length, throwOnEndOfStream: false);
        if (read < values.Length)
        {
            throw new IdxFormatException($"{path}: truncated: the header says {string.Join(" x ", shape)} = {total} values, the file holds {read}");
        }
        return new IdxArray(path, shape, values);
    }
}
