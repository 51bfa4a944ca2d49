using ParameterServer.Core.Cluster;
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

    /// <summary>Servers 1..n with 256 virtual nodes each, plus extra servers given as (id, points now, target points).</summary>
    private static ClusterView Transition(int servers, int replication, params (int Id, int Points, int Target)[] changes)
    {
        var nodes = new List<NodeInfo> { new(0, NodeRole.Scheduler, 0, "127.0.0.1", 9700, true) };
        for (int i = 1; i <= servers; i++)
        {
            var change = changes.FirstOrDefault(c => c.Id == i);
            nodes.Add(change.Id == i
                ? new NodeInfo(i, NodeRole.Server, i - 1, "127.0.0.1", 5000 + i, true, change.Points, change.Target)
                : new NodeInfo(i, NodeRole.Server, i - 1, "127.0.0.1", 5000 + i, true, 256, 256));
        }
        foreach (var c in changes.Where(c => c.Id > servers))
        {
            nodes.Add(new NodeInfo(c.Id, NodeRole.Server, c.Id - 1, "127.0.0.1", 5000 + c.Id, true, c.Points, c.Target, Joined: true));
        }
        return new ClusterView(7, true, 256, servers, 1, nodes, [Sparse], replication);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_joining_server_is_added_to_the_chains_it_will_own_and_owns_nothing_until_the_switch(int replication)
    {
        var before = Transition(4, replication).PlacementOf(Sparse);
        var transition = Transition(4, replication, (5, 0, 256));
        var after = Transition(5, replication).PlacementOf(Sparse);
        Assert.True(transition.InTransition);
        Assert.Equal(replication, transition.Copies);
        var during = transition.PlacementOf(Sparse);
        int slotOf5 = transition.SlotOfServer(5);
        Span<int> chain = stackalloc int[during.ChainLength];
        Span<int> target = stackalloc int[Math.Max(1, after.ChainLength)];
        int gained = 0;
        for (long b = 0; b < Sparse.BlockCount; b++)
        {
            Assert.Equal(before.SlotOfBlock(b), during.SlotOfBlock(b)); // the current owners serve until the switch
            int n = during.ChainOfBlock(b, chain);
            int m = after.ChainOfBlock(b, target);
            bool willHold = target[..m].Contains(slotOf5);
            Assert.Equal(willHold, chain[..n].Contains(slotOf5)); // it receives exactly the blocks it will hold
            if (willHold)
            {
                Assert.Equal(slotOf5, chain[n - 1]); // after the current chain: a copy, not an owner
                gained++;
            }
            else
            {
                Assert.Equal(replication, n);
            }
        }
        Assert.True(gained > 0);
    }

    [Fact]
    public void A_draining_server_keeps_its_ranges_until_the_switch_while_their_next_holders_get_copies()
    {
        var transition = Transition(4, 2, (3, 256, 0));
        var after = Transition(4, 2, (3, 0, 0)).PlacementOf(Sparse);
        var before = Transition(4, 2).PlacementOf(Sparse);
        var during = transition.PlacementOf(Sparse);
        Span<int> chain = stackalloc int[during.ChainLength];
        Span<int> target = stackalloc int[during.ChainLength];
        for (long b = 0; b < Sparse.BlockCount; b++)
        {
            Assert.Equal(before.SlotOfBlock(b), during.SlotOfBlock(b));
            int n = during.ChainOfBlock(b, chain);
            int m = after.ChainOfBlock(b, target);
            Assert.DoesNotContain(transition.SlotOfServer(3), target[..m].ToArray());
            int[] holders = chain[..n].ToArray();
            Assert.All(target[..m].ToArray(), slot => Assert.Contains(slot, holders)); // every future holder has it
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    public void Going_from_n_to_n_plus_one_servers_moves_about_one_in_n_plus_one_of_the_key_space(int n)
    {
        var view = Transition(n, 1, (n + 1, 0, 256));
        double ring = view.MovedRingFraction();
        double blocks = view.MovedFraction(Sparse);
        double ideal = 1.0 / (n + 1);
        Assert.InRange(ring / ideal, 0.8, 1.2);
        Assert.InRange(blocks / ideal, 0.8, 1.2);
    }

    [Fact]
    public void Rebalancing_moves_virtual_nodes_until_the_ring_shares_are_even()
    {
        // Few virtual nodes make uneven shares.
        var points = Enumerable.Range(1, 5).ToDictionary(id => id, _ => 16);
        var plan = ParameterServer.Scheduler.Elastic.RebalancePlan.Compute(points, 16);
        Assert.True(plan.Before > 1.15, $"16 virtual nodes per server should be uneven; largest share / mean = {plan.Before}");
        Assert.True(plan.After < plan.Before, $"{plan.Before} -> {plan.After} in {plan.Moves} moves");
        Assert.True(plan.Moves > 0);
        Assert.InRange(plan.MovedFraction, 0.001, 0.9);
        Assert.Equal(plan.After, new HashRing(plan.Points.Select(e => (e.Key, e.Value)).ToArray(), 16).Shares().Values.Max() * 5, 6);
    }
}
