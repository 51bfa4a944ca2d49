using ParameterServer.Core.Cluster;
using ParameterServer.Scheduler;

namespace ParameterServer.Tests;

/// <summary>The scheduler's --max-memory-mb arithmetic: shares on the real ring, and advice that holds on every placement.</summary>
public class MemoryCapTests
{
    // 2M rows of 16 floats with AdaGrad's accumulator: 256 MB; 64 blocks, so that placement is lumpy.
    private static readonly TableInfo Model = TableInfo.From(1, new TableSpec("m", 16) { DenseSize = 2_000_000, BlockKeys = 31_250, Handler = "adagrad" });

    private static int Copies(int servers) => Math.Min(2, servers);

    [Fact]
    public void Shares_count_every_copy_of_every_row_with_its_optimizer_state()
    {
        var held = MemoryCap.Held(new HashRing([1, 2, 3], 256), copies: 2, [Model]);
        Assert.Equal(16 * 2 * 4, MemoryCap.RowBytes(Model));
        Assert.Equal(2L * 2_000_000 * 128, held.Values.Sum());
        Assert.Equal([1, 2, 3], held.Keys.Order());
    }

    [Fact]
    public void The_advised_servers_fit_on_every_placement_a_job_could_get_and_one_fewer_does_not_on_some()
    {
        long cap = 130L << 20;
        int workers = 2;
        int needed = MemoryCap.ServersNeeded([Model], cap, 256, Copies, workers);
        // The even split (2 x 244 MiB over 130 MiB servers) would ask for 4, but on 64 blocks some placements of 4 put
        // more than 130 MiB on one server.
        Assert.Equal(5, needed);
        bool Fits(int n, int[] ids) => MemoryCap.Held(new HashRing(ids, 256), Copies(n), [Model]).Values.All(b => b <= cap);
        var every = MemoryCap.Placements(needed, workers, samples: 64).ToList();
        Assert.Equal(Binomial(needed + workers, needed), every.Count);
        Assert.All(every, ids => Assert.True(Fits(needed, ids), $"servers {string.Join(",", ids)} over the cap"));
        Assert.Contains(MemoryCap.Placements(needed - 1, workers, samples: 64), ids => !Fits(needed - 1, ids));
    }

    [Fact]
    public void Placements_are_the_id_sets_of_the_servers_among_the_first_nodes_or_a_fixed_sample_of_them()
    {
        Assert.Equal([[1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]], MemoryCap.Placements(2, 2, samples: 64).ToArray());
        var sample = MemoryCap.Placements(40, 40, samples: 8).ToArray();
        Assert.Equal(8, sample.Length);
        Assert.All(sample, ids => Assert.Equal(40, ids.Distinct().Count(id => id is >= 1 and <= 80)));
        Assert.Equal(sample, MemoryCap.Placements(40, 40, samples: 8).ToArray());
    }

    private static int Binomial(int n, int k) => k == 0 ? 1 : Binomial(n - 1, k - 1) * n / k;
}
