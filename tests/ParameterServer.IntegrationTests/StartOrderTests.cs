using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>Nodes started in any order (as Kubernetes starts pods): servers and workers wait for their scheduler.</summary>
[Collection("processes")]
public sealed class StartOrderTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Servers_and_workers_started_before_their_scheduler_wait_for_it_and_run_the_job()
    {
        string port = Ports.Free().ToString(CultureInfo.InvariantCulture), address = $"127.0.0.1:{port}";
        var nodes = new List<Pserver>();
        try
        {
            nodes.Add(Pserver.Start("server", "--scheduler", address));
            nodes.Add(Pserver.Start("worker", "--scheduler", address, "--app", "counter", "--json", "--rounds", "20"));
            nodes.Add(Pserver.Start("server", "--scheduler", address));
            nodes.Add(Pserver.Start("worker", "--scheduler", address, "--app", "counter", "--json", "--rounds", "20"));
            foreach (var node in nodes)
            {
                await node.WaitForLineAsync(l => l.Contains($"Waiting for the scheduler at {address}", StringComparison.Ordinal), Limit, stderr: true);
            }
            await Task.Delay(1000); // they keep waiting
            Assert.All(nodes, n => Assert.False(n.Process.HasExited, n.Describe()));
            using var scheduler = Pserver.Start("scheduler", "--port", port, "--servers", "2", "--workers", "2");
            foreach (var worker in nodes.Where((_, i) => i % 2 == 1))
            {
                await worker.WaitForExitAsync(Limit);
                Assert.True(worker.ExitCode == 0, worker.Describe());
                using var summary = JsonDocument.Parse(worker.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal)));
                Assert.True(summary.RootElement.GetProperty("ok").GetBoolean(), worker.Describe());
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                node.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_worker_whose_scheduler_never_comes_exits_3_after_its_startup_timeout_saying_what_it_waited_for()
    {
        string address = $"127.0.0.1:{Ports.Free().ToString(CultureInfo.InvariantCulture)}";
        var clock = Stopwatch.StartNew();
        using var worker = await Pserver.RunAsync(Limit, "worker", "--scheduler", address, "--startup-timeout", "2", "--app", "counter");
        Assert.Equal(3, worker.ExitCode);
        Assert.Contains($"no scheduler accepted a connection at {address} within 2 s (--startup-timeout)", worker.Stderr, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed.TotalSeconds, 2, 30);
    }

    [Fact]
    public async Task A_node_started_for_another_job_is_refused_naming_both_jobs()
    {
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--job-id", "ctr-a");
        string address = (await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit))["scheduler listening on ".Length..];
        using var worker = await Pserver.RunAsync(Limit, "worker", "--scheduler", address, "--job-id", "ctr-b", "--app", "counter");
        Assert.NotEqual(0, worker.ExitCode);
        Assert.Contains("this scheduler runs job 'ctr-a'; this worker was started for job 'ctr-b' (--job-id)", worker.Stderr, StringComparison.Ordinal);
        using var server = await Pserver.RunAsync(Limit, "server", "--scheduler", address, "--job-id", "ctr-b");
        Assert.NotEqual(0, server.ExitCode);
        Assert.Contains("this server was started for job 'ctr-b'", server.Stderr, StringComparison.Ordinal);
    }
}
