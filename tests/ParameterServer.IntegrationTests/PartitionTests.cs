using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;
using ParameterServer.Hosting.Network;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// Gray failures on a real network: every process on a host of its own (a network namespace with its own address,
/// joined to the others by a bridge: <see cref="NetworkLab"/>), then a server's link cut, healed, slowed, or broken
/// one way. Needs root (CI runs as root); skipped, saying why, where network namespaces cannot be made.
/// </summary>
[Collection("processes")]
public sealed class PartitionTests(ITestOutputHelper output)
{

    private static string[] Counter(int rounds, int pauseMs) =>
        ["--app", "counter", "--json", "--keys", "2000", "--width", "16", "--rounds", rounds.ToString(CultureInfo.InvariantCulture), "--pause-ms", pauseMs.ToString(CultureInfo.InvariantCulture)];

    [NetworkLabFact]
    public async Task A_server_cut_off_for_6_s_is_replaced_the_job_stays_exact_and_the_healed_server_never_serves()
    {
        using var lab = NetworkLab.Create(1 + 3 + 2);
        using var job = await ProcessCluster.StartAsync(3, 2, 2, [], Counter(4000, 2), lab);
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var victim = job.Servers[1];
        var cut = Stopwatch.StartNew();
        lab.SetLink(lab.Hosts[2], up: false);
        await Task.Delay(TimeSpan.FromSeconds(6));
        Assert.True(job.Workers.All(w => !w.Process.HasExited), $"the job ended before the link was healed: make the run longer\n{job.Describe()}");
        lab.SetLink(lab.Hosts[2], up: true);
        var healed = Stopwatch.StartNew();
        await victim.WaitForExitAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"the healed server exited {healed.ElapsedMilliseconds} ms after its link came back, code {victim.ExitCode}:\n{victim.Stderr}");
        // Cut off, its lease ran out 0.6 s in and it refused requests; healed, it finds itself declared dead and exits
        // without serving again.
        Assert.NotEqual(0, victim.ExitCode);
        Assert.Contains("declared dead", victim.Stderr, StringComparison.Ordinal);
        await CounterChecks.AssertExactAsync(job, cut, CounterChecks.HeartbeatTimeoutMs + 1000, output);
        // Only the cut server was declared dead: the others kept heart-beating while their traffic to it hung.
        Assert.DoesNotContain("No server is alive", job.Scheduler.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, CountDeaths(job.Scheduler.Stderr));
    }

    [NetworkLabFact]
    public async Task A_slow_lossy_link_to_one_server_costs_throughput_but_not_exactness()
    {
        var plain = await RunTimedAsync(slow: false);
        var slowed = await RunTimedAsync(slow: true);
        output.WriteLine($"slow link ({slowed.Applied}): the job took {slowed.Seconds:0.00} s against {plain.Seconds:0.00} s on a plain link ({slowed.Seconds / plain.Seconds:0.00}x)");
    }

    private async Task<(double Seconds, string Applied)> RunTimedAsync(bool slow)
    {
        using var lab = NetworkLab.Create(1 + 3 + 2);
        string applied = slow ? lab.Slow(lab.Hosts[2], delayMs: 100, megabits: 100, lossPercent: 1) : "none";
        var started = Stopwatch.StartNew();
        using var job = await ProcessCluster.StartAsync(3, 2, 2, [], Counter(300, 0), lab);
        // Losses cost retransmissions (200 ms and up), not failures: no node may be declared dead over it.
        await CounterChecks.AssertExactAsync(job, started, stallLimitMs: null, output);
        Assert.Equal(0, CountDeaths(job.Scheduler.Stderr));
        return (job.Workers.Max(w => CounterChecks.Summary(w).GetProperty("seconds").GetDouble()), applied);
    }

    [NetworkLabFact]
    public async Task A_server_that_cannot_hear_the_scheduler_leaves_the_job_instead_of_refusing_every_request()
    {
        // One way: the scheduler's packets to the server are dropped, the server's to the scheduler are not. The
        // server's lease ends and it refuses requests; it must leave rather than stay in the view refusing everything.
        // (Over TCP the lost acknowledgements also hold its heartbeats back in retransmission, so the scheduler
        // usually declares it dead first; the test holds either way.)
        using var lab = NetworkLab.Create(1 + 3 + 2);
        using var job = await ProcessCluster.StartAsync(3, 2, 2, [], Counter(4000, 2), lab);
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var victim = job.Servers[0];
        var cut = Stopwatch.StartNew();
        lab.DropOneWay(lab.Hosts[0], lab.Hosts[1]);
        await victim.WaitForExitAsync(TimeSpan.FromSeconds(40));
        output.WriteLine($"the server left {cut.ElapsedMilliseconds} ms after the cut:\n{victim.Stderr}");
        Assert.Contains("heartbeat echoes", victim.Stderr, StringComparison.Ordinal);
        await CounterChecks.AssertExactAsync(job, cut, SchedulerLeaseStallMs, output);
    }

    /// <summary>
    /// One-way loss of the scheduler's packets: the lease (0.6 s) runs out, the server waits 15 s more for an echo
    /// (what it would wait for a scheduler that restarts), then leaves, and the scheduler declares it dead 0.8 s after
    /// its last heartbeat; plus 1 s of slack. Usually TCP ends it much sooner (see the test).
    /// </summary>
    private const double SchedulerLeaseStallMs = 600 + 15_000 + CounterChecks.HeartbeatTimeoutMs + 1000;

    private static int CountDeaths(string schedulerLog) =>
        schedulerLog.Split('\n').Count(l => l.Contains("is dead", StringComparison.Ordinal));
}
