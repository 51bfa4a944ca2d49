using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Client.Dispatch;

namespace ParameterServer.Tests;

/// <summary>Slicing a call by server and scattering the answers back must be the identity, whatever the key layout.</summary>
public class KeySlicerTests
{
    private sealed class Source : ISliceSource
    {
        private ulong _id;

        public Slice RentSlice() => new();

        public ulong NextRequestId() => ++_id;
    }

    private static ClusterView View(int servers, params TableInfo[] tables)
    {
        var nodes = new List<NodeInfo> { new(0, NodeRole.Scheduler, 0, "127.0.0.1", 9700, true) };
        for (int i = 0; i < servers; i++)
        {
            nodes.Add(new NodeInfo(i + 1, NodeRole.Server, i, "127.0.0.1", 5000 + i, true));
        }
        return new ClusterView(3, true, 64, servers, 1, nodes, tables);
    }

    private static SliceRequest Request(ClusterView view, TableInfo table, MessageType kind, bool everyServer = false) =>
        new(view, view.PlacementOf(table), table.Width, everyServer, DeferLargeValues: false, 1 << 30,
            new FrameHeader { Type = kind, TableId = table.Id, ElementType = WireElementType.Float32 });

    /// <summary>Plays the servers: decodes each frame and answers with the values it carries.</summary>
    private static float[] RoundTrip(SliceRequest request, ulong[] keys, float[] values, out Operation op)
    {
        op = new Operation { Kind = request.Header.Type };
        KeySlicer.Slice(request, op, keys, values, new Source());
        var merged = new float[values.Length];
        var seen = new HashSet<ulong>();
        foreach (var slice in op.Slices)
        {
            Assert.Equal(HeaderStatus.Ok, FrameHeader.TryRead(slice.Frame.AsSpan(0, slice.FrameLength), int.MaxValue, out var header, out _));
            Assert.Null(DataPayload.Validate(header));
            var payload = slice.Frame.AsSpan(FrameHeader.Size, header.PayloadLength);
            var frameKeys = DataPayload.Keys(header, payload);
            Assert.Equal(-1, frameKeys.FindUnsorted());
            for (int i = 0; i < frameKeys.Count; i++)
            {
                Assert.Equal(slice.ServerSlot, request.Placement.SlotOf(frameKeys[i]));
                Assert.True(seen.Add(frameKeys[i]));
            }
            KeySlicer.Scatter(slice, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)), merged, request.Width);
        }
        Assert.Equal(keys.Length, seen.Count);
        return merged;
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 3, 500)]
    [InlineData(3, 1, 1000)]
    [InlineData(4, 8, 300)]
    [InlineData(5, 2, 2000)]
    public void Sparse_keys_come_back_in_call_order(int servers, int width, int count)
    {
        var table = TableInfo.From(1, new TableSpec("s", width));
        var random = new Random(servers * 1000 + count);
        ulong[] keys = Enumerable.Range(0, count).Select(_ => (ulong)random.NextInt64()).Distinct().Order().ToArray();
        float[] values = Enumerable.Range(0, keys.Length * width).Select(i => (float)i).ToArray();
        Assert.Equal(values, RoundTrip(Request(View(servers, table), table, MessageType.Push, false), keys, values, out _));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Dense_runs_come_back_in_call_order(int servers)
    {
        var table = TableInfo.From(2, new TableSpec("d", 4) { DenseSize = 100_000, BlockKeys = 256 });
        ulong[] keys = Enumerable.Range(1000, 5000).Select(k => (ulong)k).ToArray();
        float[] values = Enumerable.Range(0, keys.Length * 4).Select(i => (float)i).ToArray();
        Assert.Equal(values, RoundTrip(Request(View(servers, table), table, MessageType.PushPull), keys, values, out var op));
        if (servers == 1)
        {
            // One server owns the whole run: one frame, keys as a [first, count] range, answer copied wholesale.
            var slice = Assert.Single(op.Slices);
            Assert.Equal((ushort)FrameFlags.KeyRange, BitConverter.ToUInt16(slice.Frame, 4));
            Assert.Null(slice.Positions);
        }
    }

    [Fact]
    public void Sync_pushes_reach_every_server_even_without_keys()
    {
        var table = TableInfo.From(3, new TableSpec("y") { Mode = UpdateMode.Sync });
        var view = View(3, table);
        ulong key = Enumerable.Range(0, 1000).Select(k => (ulong)k).First(k => view.PlacementOf(table).SlotOf(k) == 1);
        var op = new Operation { Kind = MessageType.Push };
        KeySlicer.Slice(Request(view, table, MessageType.Push, everyServer: true), op, [key], [1f], new Source());
        Assert.Equal([0, 1, 2], op.Slices.Select(s => s.ServerSlot));
        Assert.Equal([0, 1, 0], op.Slices.Select(s => s.Count));
    }

    [Fact]
    public void Frames_over_the_limit_are_refused_with_the_server_named()
    {
        var table = TableInfo.From(4, new TableSpec("big", 1 << 20));
        var view = View(1, table);
        var request = Request(view, table, MessageType.Pull) with { MaxFrameBytes = 1 << 20 };
        var ex = Assert.Throws<PsException>(() => KeySlicer.Slice(request, new Operation { Kind = MessageType.Pull }, [1, 2], default, new Source()));
        Assert.Contains("server 1 at 127.0.0.1:5000", ex.Message, StringComparison.Ordinal);
    }
}
