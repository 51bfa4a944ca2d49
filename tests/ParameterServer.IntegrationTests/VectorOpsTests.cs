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
    public async Task Norms_and_owlqns_elementwise_operations_match_the_same_rules_applied_locally()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var w = await client.DeclareTableAsync(Vector("w"));
        var g = await client.DeclareTableAsync(Vector("g"));
        var d = await client.DeclareTableAsync(Vector("d"));
        var t = await client.DeclareTableAsync(Vector("t"));
        // A third of the weights at zero, so every branch of the pseudo-gradient runs.
        float[] vw = Random(1).Select((x, i) => i % 3 == 0 ? 0 : x).ToArray(), vg = Random(2), vd = Random(3), vt = Random(4);
        await client.WaitAsync(w.PushRange(0, vw));
        await client.WaitAsync(g.PushRange(0, vg));
        await client.WaitAsync(d.PushRange(0, vd));
        await client.WaitAsync(t.PushRange(0, vt));
        const float l1 = 0.2f;

        var results = await client.RunVectorOpsAsync([
            VectorOp.Norm1(w),
            VectorOp.MaxAbs(g),
            VectorOp.PseudoGradient(g, w, l1),
            VectorOp.ProjectDescent(d, g),
            VectorOp.ProjectOrthant(t, w),
            VectorOp.Dot(d, g),
        ]);

        var pg = vg.Select((x, i) => vw[i] > 0 ? x + l1 : vw[i] < 0 ? x - l1 : x + l1 < 0 ? x + l1 : x - l1 > 0 ? x - l1 : 0).ToArray();
        var descent = vd.Select((x, i) => x * pg[i] < 0 ? x : 0).ToArray();
        var orthant = vt.Select((x, i) => x * vw[i] < 0 ? 0 : x).ToArray();
        Assert.Equal(3, results.Length);
        Assert.Equal(vw.Sum(x => (double)Math.Abs(x)), results[0], 2);
        Assert.Equal(vg.Max(x => Math.Abs(x)), results[1], 6);
        Assert.Equal(descent.Select((x, i) => (double)x * pg[i]).Sum(), results[2], 3);
        Assert.True(results[2] < 0, "a projected direction descends");
        Assert.Contains(pg, x => x == 0); // some zero weights sit inside [-l1, l1]
        var (_, rg) = await g.ReadAllAsync();
        var (_, rd) = await d.ReadAllAsync();
        var (_, rt) = await t.ReadAllAsync();
        Assert.Equal(pg, rg, (x, y) => Math.Abs(x - y) < 1e-6f);
        Assert.Equal(descent, rd);
        Assert.Equal(orthant, rt);
    }

    [Fact]
    public async Task Lbfgs_memory_inverts_a_known_curvature_and_forgets_a_pair_whose_curvature_is_not_positive()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var memory = await LbfgsMemory.DeclareAsync(client, "mem", Vector("mem.like"), history: 3);
        var q = await client.DeclareTableAsync(Vector("q"));
        float[] vs = Random(5), vq = Random(6);

        // A pair of the quadratic 2|x|^2 / 2 (Hessian 2I): y = 2s. H q is then exactly q / 2.
        var (s, y) = memory.Reserve();
        await client.WaitAsync(s.PushRange(0, vs));
        await client.WaitAsync(y.PushRange(0, vs.Select(x => 2 * x).ToArray()));
        Assert.True(await memory.CommitAsync());
        Assert.Equal(1, memory.Count);
        await client.WaitAsync(q.PushRange(0, vq));
        await memory.ApplyInverseHessianAsync(q);
        var (_, hq) = await q.ReadAllAsync();
        Assert.Equal(vq.Select(x => x / 2).ToArray(), hq, (a, b) => Math.Abs(a - b) < 1e-5f);

        // Negative curvature (y = -s) would break positive definiteness: refused, the memory keeps its one pair.
        (s, y) = memory.Reserve();
        await client.WaitAsync(s.PushRange(0, vs));
        await client.WaitAsync(y.PushRange(0, vs.Select(x => -x).ToArray()));
        Assert.False(await memory.CommitAsync());
        Assert.Equal(1, memory.Count);
        memory.Clear();
        Assert.Equal(0, memory.Count);
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
