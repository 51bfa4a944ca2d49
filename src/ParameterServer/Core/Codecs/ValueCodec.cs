using System.Buffers.Binary;
using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using ParameterServer.Protocol;

namespace ParameterServer.Core.Codecs;

/// <summary>
/// Encodes and decodes a value section (<see cref="FrameFlags.Compressed"/>). Layout:
/// <code>
/// [u8 stages][u8 quantization][u16 0][u32 value count]
/// with Lz:  [u32 inner length][u32 compressed length][Zstandard bytes, level 1] -- the inner bytes are what follows without Lz
/// inner:    ZeroSuppress: [u32 rows present][bitmap: ceil(rows / 64) u64] then the present rows' values, quantized
///           else: all values, quantized
/// quantized n values: None n x f32 | Float16, BFloat16 n x u16 (padded to 4) | TopK [u32 k][k x u32 index][k x f32]
///                     | OneBit [f32 positive mean][f32 negative mean][ceil(n / 8) bytes, padded to 4]
/// </code>
/// Nothing is allocated: scratch comes from the array pool, and each thread keeps one Zstandard context for each
/// direction. Decoding checks every count against the bytes there. Zstandard at level 1 rather than Brotli at quality
/// 1: smaller and faster on both payloads `LosslessBenchmarks` measures (integer counts 7.6x vs 6.7x in 17 + 9 us vs
/// 22 + 14; zero-suppressed gradients 1.06x vs 1.05x in 12 + 5 us vs 18 + 15); LZ4 was 2-6x faster still but
/// compressed the counts only 3.0x.
/// </summary>
internal static partial class ValueCodec
{
    private const int PrefixBytes = 8;
    private const int LzLevel = 1;

    [ThreadStatic]
    private static ZstdSharp.Compressor? t_compressor;

    [ThreadStatic]
    private static ZstdSharp.Decompressor? t_decompressor;

    /// <summary>The most bytes <see cref="Encode"/> can write for these values.</summary>
    public static int MaxEncodedBytes(int valueCount, int width)
    {
        int rows = width > 0 ? valueCount / width : 0;
        long inner = 4 + ((rows + 63) / 64 * 8L) + 8 + (valueCount * 8L) + 8; // top-k's indices make it at most 8 bytes a value
        return checked((int)(PrefixBytes + 8 + Math.Max(inner, ZstdSharp.Compressor.GetCompressBound((int)Math.Min(inner, int.MaxValue / 2))) + 8));
    }

    /// <summary>Encodes <paramref name="values"/> (rows of <paramref name="width"/>) into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int Encode(CodecSpec spec, ReadOnlySpan<float> values, int width, Span<byte> destination)
    {
        var stages = spec.Stages;
        destination[0] = (byte)(stages & ~CodecStages.Lz);
        destination[1] = (byte)spec.Quantization;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], values.Length);
        if ((stages & CodecStages.Lz) == 0)
        {
            return PrefixBytes + EncodeInner(spec, values, width, destination[PrefixBytes..]);
        }
        byte[] scratch = ArrayPool<byte>.Shared.Rent(MaxEncodedBytes(values.Length, width));
        try
        {
            int inner = EncodeInner(spec, values, width, scratch);
            var body = destination[(PrefixBytes + 8)..];
            var compressor = t_compressor ??= new ZstdSharp.Compressor(LzLevel);
            if (compressor.TryWrap(scratch.AsSpan(0, inner), body, out int compressed) && compressed + 8 < inner)
            {
                destination[0] |= (byte)CodecStages.Lz;
                BinaryPrimitives.WriteInt32LittleEndian(destination[PrefixBytes..], inner);
                BinaryPrimitives.WriteInt32LittleEndian(destination[(PrefixBytes + 4)..], compressed);
                return PrefixBytes + 8 + Pad4(compressed);
            }
            scratch.AsSpan(0, inner).CopyTo(destination[PrefixBytes..]); // not worth it: sent as is
            return PrefixBytes + inner;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>The value count an encoded section declares (checked again by <see cref="Decode"/>).</summary>
    public static int DeclaredCount(ReadOnlySpan<byte> source) =>
        source.Length < PrefixBytes ? -1 : BinaryPrimitives.ReadInt32LittleEndian(source[4..]);

    /// <summary>Decodes into exactly <paramref name="destination"/>.Length values; throws <see cref="ProtocolException"/> on malformed input.</summary>
    public static void Decode(ReadOnlySpan<byte> source, int width, Span<float> destination)
    {
        if (source.Length < PrefixBytes)
        {
            throw new ProtocolException($"compressed value section of {source.Length} bytes is shorter than its {PrefixBytes}-byte prefix");
        }
        var stages = (CodecStages)source[0];
        var quantization = (Quantization)source[1];
        int count = BinaryPrimitives.ReadInt32LittleEndian(source[4..]);
        if ((stages & ~(CodecStages.ZeroSuppress | CodecStages.Lz)) != 0 || quantization > Quantization.OneBit)
        {
            throw new ProtocolException($"unknown value encoding (stages 0x{(byte)stages:x2}, quantization {(byte)quantization})");
        }
        if (count != destination.Length || width <= 0 || count % width != 0)
        {
            throw new ProtocolException($"compressed value section holds {count} values, the frame needs {destination.Length} (rows of {width})");
        }
        var spec = new CodecSpec(stages, quantization);
        if ((stages & CodecStages.Lz) == 0)
        {
            DecodeInner(spec, source[PrefixBytes..], width, destination);
            return;
        }
        if (source.Length < PrefixBytes + 8)
        {
            throw new ProtocolException("compressed value section is truncated");
        }
        int inner = BinaryPrimitives.ReadInt32LittleEndian(source[PrefixBytes..]);
        int compressed = BinaryPrimitives.ReadInt32LittleEndian(source[(PrefixBytes + 4)..]);
        if (inner < 0 || inner > MaxEncodedBytes(count, width) || compressed < 0 || compressed > source.Length - PrefixBytes - 8)
        {
            throw new ProtocolException($"compressed value section declares {inner} bytes from {compressed}, which does not fit its {source.Length} bytes");
        }
        byte[] scratch = ArrayPool<byte>.Shared.Rent(Math.Max(inner, 1));
        try
        {
            int written;
            try
            {
                var decompressor = t_decompressor ??= new ZstdSharp.Decompressor();
                written = decompressor.TryUnwrap(source.Slice(PrefixBytes + 8, compressed), scratch.AsSpan(0, inner), out int w) ? w : -1;
            }
            catch (ZstdSharp.ZstdException ex)
            {
                throw new ProtocolException($"compressed value section is not valid Zstandard: {ex.Message}");
            }
            if (written != inner)
            {
                throw new ProtocolException("compressed value section does not decompress to its declared length");
            }
            DecodeInner(spec, scratch.AsSpan(0, inner), width, destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private static int Pad4(int n) => (n + 3) & ~3;

    private static int EncodeInner(CodecSpec spec, ReadOnlySpan<float> values, int width, Span<byte> destination)
    {
        if ((spec.Stages & CodecStages.ZeroSuppress) == 0)
        {
            return Quantize(spec, values, destination);
        }
        int rows = values.Length / width;
        int words = (rows + 63) / 64;
        var bitmap = MemoryMarshal.Cast<byte, ulong>(destination.Slice(4, words * 8));
        bitmap.Clear();
        var bits = MemoryMarshal.Cast<float, uint>(values);
        // Present rows are packed in place after the bitmap, then quantized there (quantizing never grows a value).
        var packed = MemoryMarshal.Cast<byte, float>(destination[(4 + (words * 8))..]);
        int present = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = bits.Slice(r * width, width);
            if (width == 1 ? row[0] == 0 : !row.ContainsAnyExcept(0u))
            {
                continue;
            }
            bitmap[r >> 6] |= 1UL << (r & 63);
            values.Slice(r * width, width).CopyTo(packed[(present * width)..]);
            present++;
        }
        BinaryPrimitives.WriteInt32LittleEndian(destination, present);
        int head = 4 + (words * 8);
        if (spec.Quantization == Quantization.None)
        {
            return head + (present * width * 4);
        }
        // Quantize the packed rows: copy them aside first, the output overlaps them.
        float[] aside = ArrayPool<float>.Shared.Rent(Math.Max(1, present * width));
        try
        {
            packed[..(present * width)].CopyTo(aside);
            return head + Quantize(spec, aside.AsSpan(0, present * width), destination[head..]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(aside);
        }
    }

    private static void DecodeInner(CodecSpec spec, ReadOnlySpan<byte> source, int width, Span<float> destination)
    {
        if ((spec.Stages & CodecStages.ZeroSuppress) == 0)
        {
            Dequantize(spec.Quantization, source, destination);
            return;
        }
        int rows = destination.Length / width;
        int words = (rows + 63) / 64;
        if (source.Length < 4 + (words * 8))
        {
            throw new ProtocolException($"zero-suppressed section of {source.Length} bytes is shorter than its bitmap for {rows} rows");
        }
        int present = BinaryPrimitives.ReadInt32LittleEndian(source);
        var bitmap = MemoryMarshal.Cast<byte, ulong>(source.Slice(4, words * 8));
        int marked = 0;
        foreach (ulong word in bitmap)
        {
            marked += BitOperations.PopCount(word);
        }
        if (present != marked || present > rows)
        {
            throw new ProtocolException($"zero-suppressed section says {present} rows are present, its bitmap marks {marked} of {rows}");
        }
        float[] packed = ArrayPool<float>.Shared.Rent(Math.Max(1, present * width));
        try
        {
            var rowsPresent = packed.AsSpan(0, present * width);
            Dequantize(spec.Quantization, source[(4 + (words * 8))..], rowsPresent);
            destination.Clear();
            int next = 0;
            for (int w = 0; w < words; w++)
            {
                ulong word = bitmap[w];
                while (word != 0)
                {
                    int r = (w << 6) + BitOperations.TrailingZeroCount(word);
                    word &= word - 1;
                    rowsPresent.Slice(next * width, width).CopyTo(destination[(r * width)..]);
                    next++;
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(packed);
        }
    }

    private static int Quantize(CodecSpec spec, ReadOnlySpan<float> values, Span<byte> destination)
    {
        int n = values.Length;
        switch (spec.Quantization)
        {
            case Quantization.None:
                MemoryMarshal.AsBytes(values).CopyTo(destination);
                return n * 4;
            case Quantization.Float16:
            {
                TensorPrimitives.ConvertToHalf(values, MemoryMarshal.Cast<byte, Half>(destination[..(n * 2)])); // vectorized (F16C where present)
                return Pad4(n * 2);
            }
            case Quantization.BFloat16:
            {
                var shorts = MemoryMarshal.Cast<byte, ushort>(destination[..(n * 2)]);
                var bits = MemoryMarshal.Cast<float, uint>(values);
                for (int i = 0; i < n; i++)
                {
                    shorts[i] = ToBFloat16(bits[i]);
                }
                return Pad4(n * 2);
            }
            case Quantization.TopK:
                return EncodeTopK(values, spec.TopKFraction, destination);
            case Quantization.OneBit:
                return EncodeOneBit(values, destination);
            default:
                throw new ArgumentOutOfRangeException(nameof(spec), spec.Quantization, "unknown quantization");
        }
    }

    private static void Dequantize(Quantization quantization, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int n = destination.Length;
        switch (quantization)
        {
            case Quantization.None:
                Need(source, n * 4L, "float32 values");
                MemoryMarshal.Cast<byte, float>(source[..(n * 4)]).CopyTo(destination);
                return;
            case Quantization.Float16:
            {
                Need(source, n * 2L, "float16 values");
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source[..(n * 2)]), destination);
                return;
            }
            case Quantization.BFloat16:
            {
                Need(source, n * 2L, "bfloat16 values");
                var shorts = MemoryMarshal.Cast<byte, ushort>(source[..(n * 2)]);
                var bits = MemoryMarshal.Cast<float, uint>(destination);
                for (int i = 0; i < n; i++)
                {
                    bits[i] = (uint)shorts[i] << 16;
                }
                return;
            }
            case Quantization.TopK:
            {
                Need(source, 4, "the top-k count");
                int k = BinaryPrimitives.ReadInt32LittleEndian(source);
                if (k < 0 || k > n)
                {
                    throw new ProtocolException($"top-k section holds {k} entries of {n}");
                }
                Need(source, 4 + (k * 8L), "top-k entries");
                var indices = MemoryMarshal.Cast<byte, int>(source.Slice(4, k * 4));
                var kept = MemoryMarshal.Cast<byte, float>(source.Slice(4 + (k * 4), k * 4));
                destination.Clear();
                for (int i = 0; i < k; i++)
                {
                    if ((uint)indices[i] >= (uint)n)
                    {
                        throw new ProtocolException($"top-k index {indices[i]} is outside {n} values");
                    }
                    destination[indices[i]] = kept[i];
                }
                return;
            }
            case Quantization.OneBit:
            {
                Need(source, 8 + ((n + 7) / 8L), "1-bit values");
                float positive = BinaryPrimitives.ReadSingleLittleEndian(source);
                float negative = BinaryPrimitives.ReadSingleLittleEndian(source[4..]);
                var signs = source.Slice(8, (n + 7) / 8);
                for (int i = 0; i < n; i++)
                {
                    destination[i] = (signs[i >> 3] & (1 << (i & 7))) != 0 ? positive : negative;
                }
                return;
            }
            default:
                throw new ProtocolException($"unknown quantization {(byte)quantization}");
        }
    }

    private static void Need(ReadOnlySpan<byte> source, long bytes, string what)
    {
        if (source.Length < bytes)
        {
            throw new ProtocolException($"compressed value section is truncated: {what} need {bytes} bytes, {source.Length} are there");
        }
    }

    /// <summary>Round to nearest even on the dropped 16 bits; NaN stays NaN.</summary>
    private static ushort ToBFloat16(uint bits)
    {
        if ((bits & 0x7fffffff) > 0x7f800000)
        {
            return (ushort)((bits >> 16) | 0x40); // quiet NaN
        }
        uint rounding = 0x7fff + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
