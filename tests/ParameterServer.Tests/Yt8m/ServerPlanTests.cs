using ParameterServer.Hosting.Planning;

namespace ParameterServer.Tests.Yt8m;

/// <summary>`pserver plan`'s bandwidth model: one server's link carries every worker's pull and push; servers help until R W / S reaches 1.</summary>
public class ServerPlanTests
{
    // 100 MB over 1 Gbit/s (125 MB/s): 800 ms one way.
    private static readonly PlanInputs FourWorkers = new() { ModelBytes = 100_000_000, Workers = 4, BytesPerSecond = 125e6, ComputeMs = 200, Replication = 2 };

    [Fact]
    public void One_server_carries_every_workers_pull_and_push_on_its_link()
    {
        var one = ServerPlan.Row(FourWorkers, 1);
        // The server's link: 4 workers x 800 ms (one copy). Lockstep: 200 + 3200 + 3200; interleaved: the link's 3200.
        Assert.Equal((6600 + 3200) / 2, one.StepMs, 6);
        Assert.Equal(2350, one.PullMs, 6);
        Assert.Equal(2350, one.PushMs, 6);
        Assert.Equal(200_000_000, one.BytesPerServer); // values and AdaGrad state
    }

    [Fact]
    public void Servers_help_until_each_workers_own_link_is_the_limit()
    {
        var rows = ServerPlan.Predict(FourWorkers, [2, 4, 8, 16]);
        // R W / S = 4, 2, 1, 0.5 (replicas double a server's load): its link takes 3200, 1600, 800, 400 ms.
        Assert.Equal([4900, 2600, 1800, 1800], rows.Select(r => r.StepMs));
        Assert.Equal(7, ServerPlan.Recommend(FourWorkers)); // 1914 ms, within 10% of 1800; 6 servers take 2067
        Assert.Equal(50_000_000, rows[2].BytesPerServer); // 2 copies x 200 MB / 8
    }

    [Fact]
    public void Compute_bound_jobs_need_few_servers_and_memory_caps_need_more()
    {
        var computeBound = FourWorkers with { ComputeMs = 60_000 };
        Assert.Equal(1, ServerPlan.Recommend(computeBound)); // 64.1 s on one server is within 10% of 61.6 s
        var capped = computeBound with { MaxMemoryBytes = 30_000_000 };
        Assert.False(ServerPlan.Row(capped, 7).Fits); // 57 MB a server
        Assert.Equal(15, ServerPlan.Recommend(capped)); // 2 x 200 MB x 1.1 / 15 = 29.3 MB
        Assert.Contains("advice: 15 servers", ServerPlan.Explain(capped, [1, 2, 4], "given"), StringComparison.Ordinal);
    }
}
