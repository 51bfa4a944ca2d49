using ParameterServer.Server;

namespace ParameterServer.IntegrationTests;

/// <summary>Sync rounds across a server joining the running job (real TCP, in this process so the order is forced).</summary>
public sealed class SyncJoinTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_round_one_worker_cut_before_a_server_joined_does_not_hold_the_other_workers_push_at_that_server()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        await using var _ = cluster;
        var (a, b) = (clients[0], clients[1]);
        try
        {
            var spec = new TableSpec("sync") { Mode = UpdateMode.Sync, DenseSize = 4096 };
            var tableA = await a.DeclareTableAsync(spec);
            var tableB = await b.DeclareTableAsync(spec);
            var keys = Enumerable.Range(0, 4096).Select(k => (ulong)k).ToArray();
            var ones = Enumerable.Repeat(1f, keys.Length).ToArray();
            for (int round = 0; round < 2; round++)
            {
                await Task.WhenAll(a.WaitAsync(tableA.Push(keys, ones)), b.WaitAsync(tableB.Push(keys, ones))).WaitAsync(Limit);
            }

            // B cuts round 2 by the view of two servers (no keys: nothing of it can move), and it stays open there.
            long bRound2 = tableB.Push([], []);
            var joined = await ServerNode.StartAsync(new ServerOptions { Scheduler = cluster.Address, Join = true });
            await using var __ = joined;
            await WaitForAsync(() => a.Routes.View is { Servers.Count: 3, InTransition: false } && b.Routes.View is { Servers.Count: 3, InTransition: false }, "both workers to route by the view with the joined server",
                () => $"scheduler view {Describe(cluster.Scheduler.View)}; worker A routes by {Describe(a.Routes.View)}, B by {Describe(b.Routes.View)}");

            // A cuts round 2 by the view of three servers: the joined one gets A's part and must not wait for B's,
            // which never comes there. (It did, until B's round 3, which B could not reach: a deadlock at the next barrier.)
            long aRound2 = tableA.Push(keys, ones);
            await Task.WhenAll(a.WaitAsync(aRound2), b.WaitAsync(bRound2)).WaitAsync(Limit);
            await Task.WhenAll(a.WaitAsync(tableA.Push(keys, ones)), b.WaitAsync(tableB.Push(keys, ones))).WaitAsync(Limit); // round 3, on all three

            var pulled = new float[keys.Length];
            await a.WaitAsync(tableA.Pull(keys, pulled)).WaitAsync(Limit);
            // Rounds 0, 1 and 3 add 2 per key (both workers), round 2 adds A's 1: every key holds 7, wherever it lives now.
            Assert.All(pulled, v => Assert.Equal(7f, v));
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    private static string Describe(Core.Cluster.ClusterView view) =>
        $"{view.Number} ({(view.InTransition ? "in transition" : "settled")}: {string.Join(", ", view.Nodes.Select(n => $"{n.Describe()} {(n.Alive ? "alive" : "dead")} {n.Points}->{n.TargetPoints}"))})";

    private static async Task WaitForAsync(Func<bool> condition, string what, Func<string> state)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"waited {Limit.TotalSeconds} s for {what}; {state()}");
            }
            await Task.Delay(20);
        }
    }
}
