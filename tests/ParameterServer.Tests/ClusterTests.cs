using ParameterServer.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Tests;

public class ClusterTests
{
    private static ClusterView View(int servers, int virtualNodes = 256, params TableInfo[] tables)
    {
        var nodes = new List<NodeInfo> { new(0, NodeRole.Scheduler, 0, "127.0.0.1", 9700, true) };
        for (int i = 0; i < servers; i++)
        {
            nodes.Add(new NodeInfo(i + 1, NodeRole.Server, i, "127.0.0.1", 5000 + i, true));
        }
        nodes.Add(new NodeInfo(servers + 1, NodeRole.Worker, 0, "", 0, true));
        return new ClusterView(3, true, virtualNodes, servers, 1, nodes, tables);
    }

    private static readonly TableInfo Sparse = TableInfo.From(1, new TableSpec("w"));
    private static readonly TableInfo Dense = TableInfo.From(2, new TableSpec("d", 4) { DenseSize = 10_000_000, BlockKeys = 1024 });

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(7)]
    public void Consecutive_small_keys_spread_evenly_over_all_servers(int servers)
    {
        var view = View(servers, 256, Sparse);
        var placement = view.PlacementOf(Sparse);
        var counts = new int[servers];
        const int keys = 100_000;
        for (ulong k = 0; k < keys; k++)
        {
            counts[placement.SlotOf(k)]++;
        }
        double fair = (double)keys / servers;
        Assert.All(counts, c => Assert.InRange(c / fair, 0.8, 1.2));
    }

    [Fact]
    public void Dense_tables_keep_blocks_together_and_spread_blocks()
    {
        var view = View(4, 256, Dense);
        var placement = view.PlacementOf(Dense);
        Assert.All(Enumerable.Range(0, 1024), i => Assert.Equal(placement.SlotOf(0), placement.SlotOf((ulong)i)));
        var counts = new int[4];
        for (long b = 0; b < Dense.BlockCount; b++)
        {
            counts[placement.SlotOfBlock(b)]++;
        }
        double fair = Dense.BlockCount / 4.0;
        Assert.All(counts, c => Assert.InRange(c / fair, 0.8, 1.2));
    }

    [Fact]
    public void Adding_a_server_moves_about_one_in_n_plus_one_blocks_and_only_to_it()
    {
        var before = View(4, 256, Sparse).PlacementOf(Sparse);
        var afterView = View(5, 256, Sparse);
        var after = afterView.PlacementOf(Sparse);
        int moved = 0;
        for (long b = 0; b < Sparse.BlockCount; b++)
        {
            int was = before.SlotOfBlock(b);
            int now = after.SlotOfBlock(b);
            if (was != now)
            {
                moved++;
                Assert.Equal(4, now); // slots 0..3 keep their ids; only the new server (slot 4) gains
            }
        }
        Assert.InRange(moved / (double)Sparse.BlockCount, 0.12, 0.28);
    }

    [Fact]
    public void View_round_trips_through_its_payload()
    {
        var view = View(3, 64, Sparse, Dense with { Handler = "ftrl:alpha=0.1,l1=1", Mode = UpdateMode.Sync });
        var w = new PayloadWriter();
        view.Write(w);
        var read = ClusterView.Read(w.WrittenSpan);
        Assert.Equal(view.Number, read.Number);
        Assert.Equal(view.Nodes, read.Nodes);
        Assert.Equal(view.Tables, read.Tables);
        Assert.Equal(3, read.Servers.Count);
        Assert.Equal(view.PlacementOf(Sparse).SlotOf(12345), read.PlacementOf(Sparse).SlotOf(12345));
    }

    [Fact]
    public void A_truncated_view_is_a_protocol_error_not_a_crash()
    {
        var w = new PayloadWriter();
        View(2, 8, Sparse).Write(w);
        var bytes = w.WrittenSpan.ToArray();
        for (int n = 0; n < bytes.Length; n += 7)
        {
            Assert.Throws<ProtocolException>(() => ClusterView.Read(bytes.AsSpan(0, n)));
        }
    }
}
