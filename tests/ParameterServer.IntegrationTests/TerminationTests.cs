using System.Diagnostics;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>SIGTERM, what Kubernetes sends on scale-down or eviction: a server drains, then exits; a second one stops it at once.</summary>
[Collection("processes")]
public sealed class TerminationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_server_sent_SIGTERM_mid_job_drains_and_exits_and_every_counter_is_exact()
    {
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "counter", "--json", "--keys", "2000", "--rounds", "600", "--pause-ms", "10");
        await job.WaitUntilPushingAsync();
        await Task.Delay(500);
        var victim = job.Servers[1];
        var signalled = Stopwatch.StartNew();
        CounterChecks.Signal(victim.Process, "TERM");
        await victim.WaitForExitAsync(Limit);
        output.WriteLine($"the server exited {signalled.ElapsedMilliseconds} ms after SIGTERM");
        Assert.True(victim.ExitCode == 0, job.Describe());
        Assert.Contains("SIGTERM: draining server", victim.Stderr, StringComparison.Ordinal);
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the job ended before the drain did: make the run longer\n" + job.Describe());
        Assert.Contains("drained", job.Scheduler.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("is dead", job.Scheduler.Stderr, StringComparison.Ordinal); // it left; it did not die
        await CounterChecks.AssertExactAsync(job, signalled, stallLimitMs: null, output);
    }

    [Fact]
    public async Task A_second_SIGTERM_stops_a_draining_worker_at_once()
    {
        // Work units of 3 s each: a drained worker hands the rest back once its current unit is done, so for up to 3 s
        // it is draining and only a second signal ends it sooner.
        using var job = await ProcessCluster.StartAsync(1, 2, 1, "--app", "counter", "--json", "--work-units", "100", "--pause-ms", "3000");
        await job.WaitUntilPushingAsync();
        await Task.Delay(1000); // the app logs its plan just before it declares the work units: a drain needs them declared
        var worker = job.Workers[0];
        CounterChecks.Signal(worker.Process, "TERM");
        await worker.WaitForLineAsync(l => l.Contains("SIGTERM: draining worker", StringComparison.Ordinal), Limit, stderr: true);
        await Task.Delay(500);
        Assert.False(worker.Process.HasExited, worker.Describe());
        Assert.DoesNotContain("Cannot drain", worker.Stderr, StringComparison.Ordinal);
        var second = Stopwatch.StartNew();
        CounterChecks.Signal(worker.Process, "TERM");
        await worker.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.True(worker.ExitCode == 130, worker.Describe());
        Assert.True(second.ElapsedMilliseconds < 2000, $"the second SIGTERM took {second.ElapsedMilliseconds} ms to stop the worker");
    }

    [Fact]
    public async Task A_server_that_cannot_be_drained_stops_at_once_on_SIGTERM_saying_why()
    {
        using var job = await ProcessCluster.StartAsync(1, 1, 1, "--app", "counter", "--json", "--rounds", "100000", "--pause-ms", "10");
        await job.WaitUntilPushingAsync();
        var server = job.Servers[0];
        CounterChecks.Signal(server.Process, "TERM");
        await server.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(130, server.ExitCode);
        Assert.Matches("Cannot drain server \\d+: .+; stopping now", server.Stderr);
        output.WriteLine(server.Stderr.Split('\n').First(l => l.Contains("Cannot drain", StringComparison.Ordinal)));
    }
}
