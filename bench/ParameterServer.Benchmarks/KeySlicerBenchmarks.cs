using System.Buffers;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Client.Dispatch;

namespace ParameterServer.Benchmarks;

/// <summary>
/// A worker cutting one call into per-server frames (and handing the buffers back, as the client does when the
/// call completes), and merging per-server answers back into the caller's order.
/// </summary>
public class KeySlicerBenchmarks
{
    private sealed class Source : ISliceSource
    {
        private readonly Stack<Slice> _pool = new();
        private ulong _id;

        public Slice RentSlice() => _pool.Count > 0 ? _pool.Pop() : new Slice();

        public ulong NextRequestId() => ++_id;

        public void Recycle(Operation op)
        {
            foreach (var slice in op.Slices)
            {
                ArrayPool<byte>.Shared.Return(slice.Frame);
                if (slice.Positions is not null)
                {
                    ArrayPool<int>.Shared.Return(slice.Positions);
                }
                slice.Frame = [];
                slice.Positions = null;
                _pool.Push(slice);
            }
            op.Slices.Clear();
        }
    }

    private readonly Source _source = new();
    private readonly Operation _op = new() { Kind = MessageType.Push };
    private SliceRequest _request;
    private ulong[] _keys = [];
    private float[] _values = [];
    private float[] _merged = [];
    private Slice[] _answers = [];

    /// <summary>one-key: 1 key of width 1 on 1 server; sparse: 1000 hashed keys of width 8 on 4 servers; dense: 4096 consecutive keys of width 8 on 2 servers.</summary>
    [Params("one-key", "sparse", "dense")]
    public string Layout { get; set; } = "one-key";

    [GlobalSetup]
    public void Setup()
    {
        var (servers, spec, keys) = Layout switch
        {
            "one-key" => (1, new TableSpec("t"), new ulong[] { 42 }),
            "sparse" => (4, new TableSpec("t", 8), Enumerable.Range(0, 1000).Select(i => (ulong)i * 2654435761UL).Order().ToArray()),
            _ => (2, new TableSpec("t", 8) { DenseSize = 1 << 20, BlockKeys = 1024 }, Enumerable.Range(10_000, 4096).Select(i => (ulong)i).ToArray()),
        };
        var table = TableInfo.From(1, spec);
        var nodes = Enumerable.Range(0, servers).Select(i => new NodeInfo(i + 1, NodeRole.Server, i, "127.0.0.1", 5000 + i, true)).ToList();
        var view = new ClusterView(1, true, 256, servers, 1, nodes, [table]);
        _request = new SliceRequest(view, view.PlacementOf(table), table.Width, false, false, 1 << 30,
            new FrameHeader { Type = MessageType.Push, TableId = 1, ElementType = WireElementType.Float32 });
        _keys = keys;
        _values = new float[keys.Length * table.Width];
        _merged = new float[_values.Length];
        var op = new Operation { Kind = MessageType.Push };
        KeySlicer.Slice(_request, op, _keys, _values, new Source());
        _answers = op.Slices.ToArray();
    }

    [Benchmark]
    public int Slice()
    {
        KeySlicer.Slice(_request, _op, _keys, _values, _source);
        int count = _op.Slices.Count;
        _source.Recycle(_op);
        return count;
    }

    [Benchmark]
    public void Merge()
    {
        foreach (var slice in _answers)
        {
            var values = MemoryMarshal.Cast<byte, float>(slice.Frame.AsSpan(slice.HeadLength, slice.ValueCount * sizeof(float)));
            KeySlicer.Scatter(slice, values, _merged, _request.Width);
        }
    }
}
