using System.IO.Compression;
using BenchmarkDotNet.Attributes;
using K4os.Compression.LZ4;
using ParameterServer.Core.Codecs;

namespace ParameterServer.Benchmarks;

/// <summary>
/// The general-purpose codecs the `lz` stage could use, on what it compresses: a push's value section after zero
/// suppression (2,000 rows, half zero, as in <see cref="CodecBenchmarks"/>) and a row of integer counts (an LDA
/// word's topic counts: mostly zero, small). Brotli at quality 1 (what `lz` is), LZ4 (K4os, fastest level) and
/// Zstandard at level 1 (ZstdSharp). Compressed sizes are printed at setup.
/// </summary>
[MemoryDiagnoser]
public class LosslessBenchmarks
{
    private const int Rows = 2000;
    private byte[] _input = [];
    private byte[] _compressed = [];
    private byte[] _output = [];
    private int _compressedLength;
    private ZstdSharp.Compressor _zstd = null!;
    private ZstdSharp.Decompressor _unzstd = null!;

    [Params("brotli-1", "lz4", "zstd-1")]
    public string Algorithm { get; set; } = "brotli-1";

    [Params("gradient", "counts")]
    public string Payload { get; set; } = "gradient";

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        if (Payload == "gradient")
        {
            var values = new float[Rows];
            for (int i = 0; i < Rows; i++)
            {
                values[i] = random.NextDouble() < 0.5 ? 0f : (float)(random.NextDouble() - 0.5) * 0.1f;
            }
            var encoded = new byte[ValueCodec.MaxEncodedBytes(Rows, 1)];
            int length = ValueCodec.Encode(CodecSpec.Parse("zero"), values, 1, encoded);
            _input = encoded[8..length]; // the bytes the lz stage would see
        }
        else
        {
            var counts = new int[Rows];
            for (int i = 0; i < Rows; i++)
            {
                counts[i] = random.NextDouble() < 0.7 ? 0 : (int)(1 / Math.Max(1e-3, random.NextDouble())); // heavy-tailed small counts
            }
            _input = new byte[Rows * sizeof(int)];
            Buffer.BlockCopy(counts, 0, _input, 0, _input.Length);
        }
        _compressed = new byte[Math.Max(BrotliEncoder.GetMaxCompressedLength(_input.Length), LZ4Codec.MaximumOutputSize(_input.Length)) + 1024];
        _output = new byte[_input.Length];
        _zstd = new ZstdSharp.Compressor(1);
        _unzstd = new ZstdSharp.Decompressor();
        _compressedLength = Compress();
        Decompress();
        if (!_output.AsSpan().SequenceEqual(_input))
        {
            throw new InvalidOperationException($"{Algorithm} did not round-trip");
        }
        Console.WriteLine($"// {Algorithm} on {Payload}: {_input.Length} bytes -> {_compressedLength} ({(double)_input.Length / _compressedLength:0.00}x)");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _zstd.Dispose();
        _unzstd.Dispose();
    }

    [Benchmark]
    public int Compress() => Algorithm switch
    {
        "brotli-1" => BrotliEncoder.TryCompress(_input, _compressed, out int written, 1, 22) ? written : -1,
        "lz4" => LZ4Codec.Encode(_input, _compressed, LZ4Level.L00_FAST),
        _ => _zstd.Wrap(_input, _compressed),
    };

    [Benchmark]
    public int Decompress()
    {
        var source = _compressed.AsSpan(0, _compressedLength);
        return Algorithm switch
        {
            "brotli-1" => BrotliDecoder.TryDecompress(source, _output, out int written) ? written : -1,
            "lz4" => LZ4Codec.Decode(source, _output),
            _ => _unzstd.Unwrap(source, _output),
        };
    }
}
