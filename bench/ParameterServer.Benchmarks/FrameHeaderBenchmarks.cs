using BenchmarkDotNet.Attributes;
using ParameterServer.Protocol;

namespace ParameterServer.Benchmarks;

/// <summary>The 64-byte header in front of every frame: written for each request and answer, parsed for each frame received.</summary>
public class FrameHeaderBenchmarks
{
    private readonly byte[] _buffer = new byte[FrameHeader.Size];
    private FrameHeader _header;

    [GlobalSetup]
    public void Setup()
    {
        _header = new FrameHeader
        {
            Type = MessageType.PushPull, Flags = FrameFlags.KeyRange, PayloadLength = 4096, SenderId = 3, RequestId = 123456789,
            Timestamp = 42, ViewNumber = 7, TableId = 2, KeyCount = 1024, RowWidth = 1, ElementType = WireElementType.Float32, Round = 99,
        };
        _header.Write(_buffer);
    }

    [Benchmark]
    public void Encode() => _header.Write(_buffer);

    [Benchmark]
    public int Decode()
    {
        FrameHeader.TryRead(_buffer, int.MaxValue, out var header, out _);
        return header.KeyCount;
    }
}
