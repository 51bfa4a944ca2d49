using ParameterServer.Core.Cluster;

namespace ParameterServer.Tests;

/// <summary>Replication chains on the consistent-hash ring: distinct successors, and failover keeps the data in place.</summary>
public class HashRingChainTests
{
    [Fact]
    public void A_chain_starts_at_the_owner_and_holds_distinct_servers()
    {
        var ring = new HashRing([1, 2, 3, 4], virtualNodes: 64);
        var rng = new Random(7);
        Span<int> chain = stackalloc int[3];
        for (int i = 0; i < 2000; i++)
        {
            ulong position = (ulong)rng.NextInt64() * 2 + (ulong)rng.Next(2);
            Assert.Equal(3, ring.ChainOf(position, chain));
            Assert.Equal(ring.OwnerOf(position), chain[0]);
            Assert.Equal(3, chain.ToArray().Distinct().Count());
        }
    }

    [Fact]
    public void A_chain_is_never_longer_than_the_number_of_servers()
    {
        var ring = new HashRing([5, 9], virtualNodes: 16);
        Span<int> chain = stackalloc int[4];
        Assert.Equal(2, ring.ChainOf(12345, chain));
        Assert.Equal([5, 9], chain[..2].ToArray().Order());
        Assert.Throws<InvalidOperationException>(() => new HashRing(Array.Empty<int>(), 4).ChainOf(1, new int[2]));
    }

    [Fact]
    public void When_a_server_leaves_its_successor_in_each_chain_takes_over_and_the_rest_of_the_chain_stays()
    {
        int[] servers = [1, 2, 3, 4, 5];
        var before = new HashRing(servers, virtualNodes: 32);
        var after = new HashRing(servers.Where(s => s != 3).ToArray(), virtualNodes: 32);
        var rng = new Random(11);
        int moved = 0;
        for (int i = 0; i < 5000; i++)
        {
            ulong position = (ulong)rng.NextInt64() * 2;
            int[] old = new int[2];
            int[] now = new int[2];
            before.ChainOf(position, old);
            after.ChainOf(position, now);
            if (old.Contains(3))
            {
                moved++;
                // The survivor of the old chain is now the primary: it already holds the data.
                Assert.Equal(old.Single(s => s != 3), now[0]);
            }
            else
            {
                Assert.Equal(old, now); // chains without the dead server do not change
            }
        }
        Assert.InRange(moved, 5000 * 2 / 5 * 0.7, 5000 * 2 / 5 * 1.3); // about k/n of the positions
    }
}
