using BenchmarkDotNet.Attributes;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;

namespace ParameterServer.Benchmarks;

/// <summary>
/// The CPU cost of value encodings against the bytes they save: one push or pull answer of 2,000 rows (half of them zero,
/// as in sparse gradients and L1-regularised weights), encoded and decoded. The baseline copies the plain values, which is
/// what sending them unencoded costs before the socket. Encoded sizes are printed at setup.
/// </summary>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private const int Rows = 2000;
    private readonly float[] _values = new float[Rows];
    private readonly float[] _decoded = new float[Rows];
    private readonly ulong[] _keys = new ulong[Rows];
    private readonly ulong[] _unpacked = new ulong[Rows];
    private byte[] _encoded = [];
    private readonly byte[] _packedKeys = new byte[KeyPacking.MaxBytes(Rows)];
    private int _encodedLength;
    private CodecSpec _spec;

    [Params("none", "zero", "fp16", "zero+fp16", "bf16", "topk:0.1", "1bit", "zero+lz")]
    public string Codec { get; set; } = "none";

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        ulong key = 0;
        for (int i = 0; i < Rows; i++)
        {
            _values[i] = random.NextDouble() < 0.5 ? 0f : (float)(random.NextDouble() - 0.5) * 0.1f;
            key += (ulong)random.Next(1, 1000); // feature ids of a minibatch out of 1M
            _keys[i] = key;
        }
        _spec = CodecSpec.Parse(Codec);
        _encoded = new byte[Math.Max(ValueCodec.MaxEncodedBytes(Rows, 1), KeyPacking.MaxBytes(Rows))];
        _encodedLength = _spec.IsNone ? Rows * sizeof(float) : ValueCodec.Encode(_spec, _values, 1, _encoded);
        int packed = KeyPacking.TryPack(_keys, _packedKeys);
        Console.WriteLine($"// codec {Codec}: {Rows * sizeof(float)} value bytes -> {_encodedLength} ({(double)Rows * sizeof(float) / _encodedLength:0.00}x); keys {Rows * sizeof(ulong)} -> {packed} packed");
    }

    /// <summary>Baseline: the plain value section copied once.</summary>
    [Benchmark(Baseline = true)]
    public void CopyPlain() => _values.AsSpan().CopyTo(_decoded);

    [Benchmark]
    public int Encode() => _spec.IsNone ? Rows : ValueCodec.Encode(_spec, _values, 1, _encoded);

    [Benchmark]
    public void Decode()
    {
        if (!_spec.IsNone)
        {
            ValueCodec.Decode(_encoded.AsSpan(0, _encodedLength), 1, _decoded);
        }
    }

    /// <summary>Varint-delta key packing and unpacking (one StoreKeys frame's key list), independent of the value codec.</summary>
    [Benchmark]
    public int PackAndUnpackKeys()
    {
        int length = KeyPacking.TryPack(_keys, _packedKeys);
        KeyPacking.Unpack(_packedKeys.AsSpan(0, length), _unpacked);
        return length;
    }
}
