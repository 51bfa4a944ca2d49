using System.Diagnostics;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>Gray failures: a server that stops without closing its sockets (SIGSTOP) must not stall the job.</summary>
[Collection("processes")]
public sealed class HungServerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_call_waiting_on_a_stopped_server_is_logged_and_listed_by_status_naming_the_server()
    {
        // A heartbeat timeout longer than the stop: the server is slow, not dead, and the calls wait for it.
        using var job = await ProcessCluster.StartAsync(2, 1, 1, ["--heartbeat-timeout-ms", "20000"], "--app", "counter", "--json", "--keys", "2000", "--rounds", "400", "--pause-ms", "5");
        await job.WaitUntilPushingAsync();
        var victim = job.Servers[0];
        CounterChecks.Signal(victim.Process, "STOP");
        string listed;
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (true)
            {
                using var status = await Pserver.RunAsync(TimeSpan.FromSeconds(30), "status", "--scheduler", job.Address, "--json");
                using var json = System.Text.Json.JsonDocument.Parse(status.Stdout);
                var calls = json.RootElement.GetProperty("nodes").EnumerateArray().SelectMany(n => n.GetProperty("slow_calls").EnumerateArray()).Select(c => c.GetString()!).ToList();
                if (calls.Count > 0)
                {
                    listed = calls[0];
                    break;
                }
                Assert.True(DateTime.UtcNow < deadline, "status listed no slow call while a server was stopped");
                await Task.Delay(500);
            }
        }
        finally
        {
            CounterChecks.Signal(victim.Process, "CONT");
        }
        output.WriteLine(listed);
        Assert.Matches(@"^(push|pull|pushpull) #\d+ on table 'counter' \(\d+ keys\) has waited \d+\.\d s for server \d+ at 127\.0\.0\.1:\d+ \(view \d+\)$", listed);
        await job.Workers[0].WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.True(job.Workers[0].ExitCode == 0, job.Describe());
        Assert.Matches(@"slow call: (push|pull|pushpull) #\d+ on table 'counter'", job.Workers[0].Stderr); // logged once per call, as it crossed 2 s
    }

    [Fact]
    public async Task A_stopped_replica_does_not_hold_the_live_primaries_acknowledgements()
    {
        // Large rows pushed without pause: forwards to the stopped server are in flight (and its socket buffers fill)
        // when it stops. Once the scheduler declares it dead, the other copies acknowledge without it.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "counter", "--json", "--keys", "2000", "--width", "64", "--rounds", "1500");
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var victim = job.Servers[1];
        var stopped = Stopwatch.StartNew();
        CounterChecks.Signal(victim.Process, "STOP");
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the pushes ended before the server was stopped: make the run longer");
        try
        {
            await CounterChecks.AssertExactAsync(job, stopped, CounterChecks.HeartbeatTimeoutMs + 1000, output);
            Assert.Contains("is dead", job.Scheduler.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            victim.Process.Kill(); // a stopped process still takes SIGKILL
        }
    }

    [Fact]
    public async Task A_scheduler_stopped_for_3_s_stalls_the_job_while_it_is_stopped_and_declares_no_node_dead()
    {
        // The servers' leases run out while the scheduler is stopped (they refuse requests: a stall, not an error);
        // resumed, the scheduler sees it was frozen and gives every node a full heartbeat timeout to be heard.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "counter", "--json", "--keys", "2000", "--width", "16", "--rounds", "4000", "--pause-ms", "2");
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var stopped = Stopwatch.StartNew();
        CounterChecks.Signal(job.Scheduler.Process, "STOP");
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
        }
        finally
        {
            CounterChecks.Signal(job.Scheduler.Process, "CONT");
        }
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the job ended before the scheduler was resumed: make the run longer");
        await CounterChecks.AssertExactAsync(job, stopped, stallLimitMs: null, output);
        Assert.DoesNotContain("is dead", job.Scheduler.Stderr, StringComparison.Ordinal);
        Assert.Contains("did not run for", job.Scheduler.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_stopped_for_10_s_and_resumed_is_fenced_off_and_no_worker_stalls_past_the_heartbeat_timeout()
    {
        // The issue's target: SIGSTOP of one of 3 servers (replication 2) for 10 s, then SIGCONT. The job goes on
        // without it; resumed, it finds its lease ended and the scheduler refusing it, serves nothing and exits.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "counter", "--json", "--keys", "2000", "--width", "64", "--rounds", "4000", "--pause-ms", "2");
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var victim = job.Servers[2];
        var stopped = Stopwatch.StartNew();
        CounterChecks.Signal(victim.Process, "STOP");
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(10));
            Assert.True(job.Workers.All(w => !w.Process.HasExited), "the job ended before the server was resumed: make the run longer");
            CounterChecks.Signal(victim.Process, "CONT");
            var resumed = Stopwatch.StartNew();
            await victim.WaitForExitAsync(TimeSpan.FromSeconds(20));
            output.WriteLine($"the resumed server exited {resumed.ElapsedMilliseconds} ms after SIGCONT with code {victim.ExitCode}");
            output.WriteLine(victim.Stderr);
            Assert.NotEqual(0, victim.ExitCode);
            Assert.Contains("declared dead", victim.Stderr, StringComparison.Ordinal);
            await CounterChecks.AssertExactAsync(job, stopped, CounterChecks.HeartbeatTimeoutMs + 1000, output);
        }
        finally
        {
            if (!victim.Process.HasExited)
            {
                victim.Process.Kill();
            }
        }
    }
}
