using System.Diagnostics;
using System.Text.Json;
using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>Unreachable and vanishing peers: a clear error within a timeout, never a hang.</summary>
[Collection("processes")]
public class FailureTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_missing_scheduler_is_reported_quickly_by_the_client()
    {
        int port = Ports.Free();
        var watch = Stopwatch.StartNew();
        // It waits for a scheduler that may start later, for its startup timeout, then says what it waited for.
        var ex = await Assert.ThrowsAsync<PsException>(() => PsClient.ConnectAsync(new WorkerOptions { Scheduler = $"127.0.0.1:{port}", StartupTimeout = TimeSpan.FromSeconds(1) }));
        Assert.Equal(PsErrorCode.Unreachable, ex.Code);
        Assert.Contains("within 1 s (--startup-timeout)", ex.Message);
        Assert.Contains("connection refused", ex.Message);
        Assert.Contains("pserver scheduler", ex.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(6), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task A_missing_scheduler_is_reported_by_the_cli_with_exit_code_3()
    {
        int port = Ports.Free();
        using var worker = await Pserver.RunAsync(Limit, "worker", "--scheduler", $"127.0.0.1:{port}", "--startup-timeout", "1", "--app", "counter");
        Assert.Equal(3, worker.ExitCode);
        Assert.Contains($"cannot connect to the scheduler at 127.0.0.1:{port}", worker.Stderr);
        using var server = await Pserver.RunAsync(Limit, "server", "--scheduler", $"127.0.0.1:{port}", "--startup-timeout", "1");
        Assert.Equal(3, server.ExitCode);
        using var status = await Pserver.RunAsync(Limit, "status", "--scheduler", $"127.0.0.1:{port}");
        Assert.Equal(3, status.ExitCode);
        using var bad = await Pserver.RunAsync(Limit, "status", "--scheduler", "nowhere");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("HOST:PORT", bad.Stderr);
    }

    [Fact]
    public async Task Without_replication_a_server_killed_mid_request_fails_the_calls_that_needed_it_within_the_timeout()
    {
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--servers", "2", "--workers", "1", "--replication", "1", "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000");
        string line = await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
        string address = line["scheduler listening on ".Length..];
        using var server1 = Pserver.Start("server", "--scheduler", address);
        using var server2 = Pserver.Start("server", "--scheduler", address);
        await using var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = address, RequestTimeout = TimeSpan.FromSeconds(5) });
        var table = await client.DeclareTableAsync(new TableSpec("w", 16));
        ulong[] keys = Enumerable.Range(0, 2000).Select(i => (ulong)i).ToArray();
        var values = new float[keys.Length * 16];
        await table.PushAsync(keys, values);

        var watch = Stopwatch.StartNew();
        PsException? error = null;
        var killer = Task.Run(async () =>
        {
            await Task.Delay(200);
            server2.Process.Kill();
        });
        while (watch.Elapsed < TimeSpan.FromSeconds(30) && error is null)
        {
            try
            {
                await table.PullAsync(keys, values);
            }
            catch (PsException ex)
            {
                error = ex;
            }
        }
        await killer;
        Assert.NotNull(error);
        Assert.True(error!.Code is PsErrorCode.ConnectionLost or PsErrorCode.ShuttingDown or PsErrorCode.Timeout, error.ToString());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"the failure took {watch.Elapsed} to surface");
        // With one copy the dead server's parameters are gone: the scheduler ends the job rather than serve zeros.
        await scheduler.WaitForExitAsync(Limit);
        Assert.Equal(1, scheduler.ExitCode);
        Assert.Contains("Parameters are lost", scheduler.Stderr);
        Assert.Contains("replication 1", scheduler.Stderr);
    }

    [Fact]
    public async Task Status_lists_nodes_roles_liveness_and_ranges()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            using var status = await Pserver.RunAsync(Limit, "status", "--scheduler", cluster.Address, "--json");
            Assert.True(status.ExitCode == 0, status.Describe());
            using var doc = JsonDocument.Parse(status.StdoutLines.Single());
            var root = doc.RootElement;
            Assert.True(root.GetProperty("view").GetInt64() > 0);
            var roles = root.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("role").GetString()).ToList();
            Assert.Equal(["scheduler", "server", "server", "server", "worker"], roles.Order());
            Assert.All(root.GetProperty("nodes").EnumerateArray(), n => Assert.True(n.GetProperty("alive").GetBoolean()));
            var ranges = root.GetProperty("ranges").EnumerateArray().ToList();
            Assert.Equal("0x0000000000000000", ranges[0].GetProperty("start").GetString());
            Assert.Equal("0xffffffffffffffff", ranges[^1].GetProperty("end").GetString());
            Assert.Equal(3, ranges.Select(r => r.GetProperty("server").GetInt32()).Distinct().Count());
            foreach (var range in ranges)
            {
                // Replication 2 (the default with 3 servers): the primary, then its successor on the ring.
                var chain = range.GetProperty("chain").EnumerateArray().Select(c => c.GetInt32()).ToList();
                Assert.Equal(2, chain.Distinct().Count());
                Assert.Equal(range.GetProperty("server").GetInt32(), chain[0]);
            }
            Assert.True(root.GetProperty("replication").GetProperty("healthy").GetBoolean());

            using var human = await Pserver.RunAsync(Limit, "status", "--scheduler", cluster.Address);
            Assert.Contains("of the ring", human.Stdout);
            Assert.Contains("replication: 2 copies of every range", human.Stdout);
        }
    }
}
