using BenchmarkDotNet.Attributes;
using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;

namespace ParameterServer.Benchmarks;

/// <summary>A server applying one push and reading one pull of 1000 rows of width 8, dense (a run of keys) and sparse (hashed keys).</summary>
public class StoreBenchmarks
{
    private TableStore _store = null!;
    private ulong[] _keys = [];
    private float[] _values = [];
    private float[] _read = [];

    [Params("dense", "sparse")]
    public string Table { get; set; } = "dense";

    [Params("sum", "adagrad")]
    public string Handler { get; set; } = "sum";

    [GlobalSetup]
    public void Setup()
    {
        const int width = 8;
        var spec = Table == "dense"
            ? new TableSpec("t", width) { DenseSize = 1 << 20, BlockKeys = 1024, Handler = Handler }
            : new TableSpec("t", width) { Handler = Handler };
        _store = new TableStore(TableInfo.From(1, spec), UpdateHandlers.Parse(Handler));
        _keys = Table == "dense"
            ? Enumerable.Range(4096, 1000).Select(i => (ulong)i).ToArray()
            : Enumerable.Range(0, 1000).Select(i => (ulong)i * 2654435761UL).Order().ToArray();
        _values = Enumerable.Range(0, _keys.Length * width).Select(i => i * 1e-3f).ToArray();
        _read = new float[_values.Length];
        _store.Apply(KeyList.Of(_keys), _values); // rows exist: steady state
    }

    [Benchmark]
    public void Apply() => _store.Apply(KeyList.Of(_keys), _values);

    [Benchmark]
    public void Read() => _store.Read(KeyList.Of(_keys), _read);
}
