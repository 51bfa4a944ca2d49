using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>Server-side vector operations on real servers (in-process, real TCP), and work given out in rounds.</summary>
public sealed class VectorOpsTests
{
    private const int Size = 1000;
    private const int Width = 8;

    private static TableSpec Vector(string name, string? group = "lbfgs", int blockKeys = 16) =>
        new(name, Width) { DenseSize = Size, BlockKeys = blockKeys, PlacementGroup = group };

    private static float[] Random(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, Size * Width).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
    }

    [Fact]
    public async Task Axpby_and_dot_products_run_on_the_servers_and_match_the_same_arithmetic_done_locally()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var a = await client.DeclareTableAsync(Vector("a"));
        var b = await client.DeclareTableAsync(Vector("b"));
        var c = await client.DeclareTableAsync(Vector("c"));
        float[] va = Random(1), vb = Random(2);
        await client.WaitAsync(a.PushRange(0, va));
        await client.WaitAsync(b.PushRange(0, vb));

        var dots = await client.RunVectorOpsAsync([
            VectorOp.Dot(a, b),
            VectorOp.Axpy(a, 0.5, b),      // a += 0.5 b
            VectorOp.Copy(c, a),           // c = a
            VectorOp.Axpby(c, 2, b, -1),   // c = 2c - b
            VectorOp.Dot(c, c),
            VectorOp.Scale(b, 0),          // b = 0
        ]);

        var expectedA = va.Select((x, i) => x + (0.5f * vb[i])).ToArray();
        var expectedC = expectedA.Select((x, i) => (2 * x) - vb[i]).ToArray();
        Assert.Equal(2, dots.Length);
        Assert.Equal(va.Select((x, i) => (double)x * vb[i]).Sum(), dots[0], 3);
        Assert.Equal(expectedC.Select(x => (double)x * x).Sum(), dots[1], 2);
        var (_, ra) = await a.ReadAllAsync();
        var (_, rb) = await b.ReadAllAsync();
        var (_, rc) = await c.ReadAllAsync();
        Assert.Equal(expectedA, ra, (x, y) => Math.Abs(x - y) < 1e-5f);
        Assert.Equal(expectedC, rc, (x, y) => Math.Abs(x - y) < 1e-5f);
        Assert.All(rb, x => Assert.Equal(0f, x));
    }

    [Fact]
    public async Task Tables_that_are_not_cut_alike_are_refused_before_anything_changes()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var a = await client.DeclareTableAsync(Vector("a"));
        var loose = await client.DeclareTableAsync(Vector("loose", group: null));
        await client.WaitAsync(a.PushRange(0, Random(1)));

        var refused = await Assert.ThrowsAsync<PsException>(() => client.RunVectorOpsAsync([VectorOp.Scale(a, 0), VectorOp.Dot(a, loose)]));
        Assert.Contains("placement group", refused.Message);
        var (_, values) = await a.ReadAllAsync();
        Assert.Equal(Random(1), values); // the Scale before the bad operation did not run

        var other = await Assert.ThrowsAsync<PsException>(() => client.DeclareTableAsync(Vector("other", blockKeys: 32)));
        Assert.Contains("must be cut alike", other.Message);
    }

    [Fact]
    public async Task Work_given_out_in_rounds_starts_a_round_only_when_the_last_one_is_done()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 1, workers: 2);
        await using var _ = cluster;
        await using var first = clients[0];
        await using var second = clients[1];
        for (int round = 0; round < 3; round++)
        {
            await first.DeclareWorkRoundAsync(round, 4, TimeSpan.Zero);
            await second.DeclareWorkRoundAsync(round, 4, TimeSpan.Zero); // the same round again: a no-op
            var done = new List<int>();
            while (await first.ClaimWorkAsync() is int unit)
            {
                done.Add(unit);
                if (unit == 2)
                {
                    // The round is not done: the next one cannot start.
                    var early = await Assert.ThrowsAsync<PsException>(() => second.DeclareWorkRoundAsync(round + 1, 4, TimeSpan.Zero));
                    Assert.Contains($"round {round} has", early.Message);
                }
                Assert.True(await first.CompleteWorkAsync(unit));
            }
            Assert.Equal([0, 1, 2, 3], done);
            Assert.Null(await second.ClaimWorkAsync());
        }
    }
}
