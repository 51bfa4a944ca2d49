using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace ParameterServer.Apps.Sketch.Sketching;

/// <summary>
/// A sketch on disk: "PSCM", format 1, layout, width, depth (int32 each, little-endian), then the counters as int64
/// (the flat layout of <see cref="SketchShape"/>). Written whole to a temporary file, then renamed.
/// </summary>
public static class SketchFile
{
    private const uint Magic = 0x4D435350; // "PSCM"
    private const int HeaderBytes = 20;

    public static void Write(string path, CountMinSketch sketch)
    {
        ArgumentNullException.ThrowIfNull(sketch);
        string temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            Span<byte> header = stackalloc byte[HeaderBytes];
            BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(header[4..], 1);
            BinaryPrimitives.WriteInt32LittleEndian(header[8..], (int)sketch.Shape.Layout);
            BinaryPrimitives.WriteInt32LittleEndian(header[12..], sketch.Shape.Width);
            BinaryPrimitives.WriteInt32LittleEndian(header[16..], sketch.Shape.Depth);
            file.Write(header);
            file.Write(MemoryMarshal.AsBytes(sketch.Counters.AsSpan())); // little-endian machines only, as the wire
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Reads a sketch; throws <see cref="InvalidDataException"/> naming the file and what is wrong.</summary>
    public static CountMinSketch Read(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4)) != 1)
        {
            throw new InvalidDataException($"'{path}' is not a sketch file (format 1)");
        }
        var layout = (SketchLayout)BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8));
        var shape = new SketchShape(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12)), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(16)), layout);
        long expected = HeaderBytes + ((long)shape.Counters * sizeof(long));
        if (bytes.Length != expected)
        {
            throw new InvalidDataException($"'{path}' holds {bytes.Length:N0} bytes; a {shape.Width} x {shape.Depth} sketch needs {expected:N0} (truncated?)");
        }
        var sketch = new CountMinSketch(shape);
        MemoryMarshal.Cast<byte, long>(bytes.AsSpan(HeaderBytes)).CopyTo(sketch.Counters);
        return sketch;
    }
}
