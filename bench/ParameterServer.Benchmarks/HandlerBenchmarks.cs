using BenchmarkDotNet.Attributes;
using ParameterServer.Extensions;

namespace ParameterServer.Benchmarks;

/// <summary>The server-side update math of one pushed row, per built-in handler and row width.</summary>
public class HandlerBenchmarks
{
    private IUpdateHandler _handler = null!;
    private float[] _row = [];
    private float[] _pushed = [];

    [Params("sum", "sgd", "adagrad", "ftrl", "adam")]
    public string Handler { get; set; } = "sum";

    [Params(16, 1024)]
    public int Width { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _handler = UpdateHandlers.Parse(Handler);
        _row = new float[Width + _handler.StateLength(Width)];
        _pushed = Enumerable.Range(0, Width).Select(i => (i % 7 - 3) * 0.01f).ToArray();
    }

    [Benchmark]
    public void Apply() => _handler.Apply(_row, _pushed, Width);
}
