namespace ParameterServer.IntegrationTests;

/// <summary>Servers started with a memory cap (pserver server --max-memory-mb): a dense table too big for them is refused with the fix; spread over more servers it fits.</summary>
public sealed class MemoryCapTests
{
    private const long Cap = 4L << 20;

    [Fact]
    public async Task A_table_over_one_capped_server_is_refused_with_the_number_of_servers_it_needs()
    {
        // 1M keys x (1 value + 1 AdaGrad accumulator) x 4 bytes = 8 MiB: twice one server's 4 MiB.
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 1, workers: 1, o => o.MaxMemoryBytes = Cap);
        await using var _ = cluster;
        await using var client = clients[0];
        var small = await client.DeclareTableAsync(new TableSpec("small") { DenseSize = 100_000, Handler = "adagrad:lr=0.1" });
        var ex = await Assert.ThrowsAsync<PsException>(() => client.DeclareTableAsync(new TableSpec("big") { DenseSize = 1_000_000, Handler = "adagrad:lr=0.1" }));
        Assert.Contains("table 'big' (7.6 MiB with its optimizer state) does not fit", ex.Message);
        Assert.Contains("over its --max-memory-mb 4.0", ex.Message);
        // From 2 servers on, each block has 2 copies: 5 servers of 4 MiB hold 2 x 7.6 MiB with a tenth to spare.
        Assert.Contains("start at least 5 servers (--servers 5) or raise --max-memory-mb", ex.Message);
        // Nothing was lost: the first table still works, and the refused one was never made (a smaller 'big' is new).
        await client.WaitAsync(small.PushRange(0, [1f, 2f]));
        await client.DeclareTableAsync(new TableSpec("big") { DenseSize = 1_000, Handler = "adagrad:lr=0.1" });
    }

    [Fact]
    public async Task With_replicas_the_advice_counts_every_copy_and_following_it_fits()
    {
        var big = new TableSpec("big") { DenseSize = 1_000_000, Handler = "adagrad:lr=0.1" };
        int advised;
        {
            var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1, o => o.MaxMemoryBytes = Cap);
            await using var _ = cluster;
            await using var client = clients[0];
            var ex = await Assert.ThrowsAsync<PsException>(() => client.DeclareTableAsync(big));
            Assert.Contains("2 copies", ex.Message); // chain replication keeps each block on two servers
            var match = System.Text.RegularExpressions.Regex.Match(ex.Message, @"--servers (\d+)");
            Assert.True(match.Success, ex.Message);
            advised = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(advised, 4, 6); // 2 x 7.6 MiB of copies over 4 MiB servers, plus a tenth for uneven shares
        }
        {
            var (cluster, clients) = await InProcessCluster.StartAsync(servers: advised, workers: 1, o => o.MaxMemoryBytes = Cap);
            await using var _ = cluster;
            await using var client = clients[0];
            var table = await client.DeclareTableAsync(big);
            var gradients = Enumerable.Range(1, 1000).Select(i => (float)i).ToArray();
            await client.WaitAsync(table.PushRange(999_000, gradients));
            var pulled = new float[1000];
            await client.WaitAsync(table.PullRange(999_000, pulled));
            Assert.All(pulled, w => Assert.Equal(-0.1f, w, 1e-6f)); // AdaGrad's first step: -lr g / |g|
        }
    }
}
