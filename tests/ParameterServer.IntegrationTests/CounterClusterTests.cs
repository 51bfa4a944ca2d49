using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver local` with real scheduler, server and worker processes on 127.0.0.1.</summary>
[Collection("processes")]
public class CounterClusterTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);

    private static JsonElement Summary(Pserver run)
    {
        var line = run.StdoutLines.LastOrDefault(l => l.StartsWith("{\"app\"", StringComparison.Ordinal))
            ?? throw new Xunit.Sdk.XunitException($"no summary line; {run.Describe()}");
        return JsonDocument.Parse(line).RootElement;
    }

    [Theory]
    [InlineData("async", "bounded:4")]
    [InlineData("sync", "sequential")]
    [InlineData("sync", "bounded:3")]
    public async Task Counter_on_two_servers_and_two_workers_counts_every_push(string mode, string consistency)
    {
        using var run = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "2", "--app", "counter", "--json",
            "--keys", "500", "--rounds", "40", "--width", "3", "--mode", mode, "--consistency", consistency);
        Assert.True(run.ExitCode == 0, run.Describe());
        var summary = Summary(run);
        Assert.True(summary.GetProperty("ok").GetBoolean(), run.Describe());
        Assert.Equal(0, summary.GetProperty("mismatches").GetInt32());
        Assert.Equal(80, summary.GetProperty("pushes").GetInt32());
        Assert.Equal(2, run.StdoutLines.Count(l => l.Contains("\"app\":\"counter\",\"ok\":true,\"rank\"", StringComparison.Ordinal)));
        var servers = ServerStats(run);
        Assert.Equal(2, servers.Count);
        // Replication 2 (the default with 2 servers): each server is primary for a share and replica for the rest; sync
        // tables replicate each round's aggregate (replication after aggregation).
        Assert.All(servers, s => Assert.Equal(500, s.GetProperty("tables")[0].GetProperty("keys").GetInt32()));
        Assert.All(servers, s => Assert.True(s.GetProperty("replicated").GetInt64() > 0, s.ToString()));
        if (mode == "sync")
        {
            // One forward per round and replica, however many workers pushed: 40 rounds here, not 80 pushes.
            Assert.All(servers, s => Assert.InRange(s.GetProperty("replicated").GetInt64(), 1, 40));
        }
    }

    private static List<JsonElement> ServerStats(Pserver run) => run.StdoutLines
        .Where(l => l.StartsWith("[server", StringComparison.Ordinal) && l.Contains("{\"server\"", StringComparison.Ordinal))
        .Select(l => JsonDocument.Parse(l[l.IndexOf('{', StringComparison.Ordinal)..]).RootElement)
        .ToList();

    /// <summary>
    /// Bounded delay, checked at the servers: each server records, for every push of round r, how many earlier
    /// rounds were still unapplied (r minus rounds completed). With sync aggregation that is how far the pushing
    /// worker is ahead of the slowest; it must never exceed tau. Rank 1 is slowed down so rank 0 runs ahead.
    /// </summary>
    [Theory]
    [InlineData("sequential", 0, 0)]
    [InlineData("bounded:2", 2, 2)]
    [InlineData("eventual", 5, 29)]
    public async Task A_worker_is_never_more_than_tau_rounds_ahead(string consistency, int minLead, int maxLead)
    {
        using var run = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "2", "--app", "counter", "--json",
            "--keys", "50", "--rounds", "30", "--mode", "sync", "--consistency", consistency, "--pause-ms", "15", "--slow-rank", "1");
        Assert.True(run.ExitCode == 0, run.Describe());
        var servers = ServerStats(run);
        Assert.Equal(2, servers.Count);
        foreach (var s in servers)
        {
            var table = s.GetProperty("tables")[0];
            Assert.Equal(30, table.GetProperty("rounds_applied").GetInt32());
            Assert.InRange(table.GetProperty("max_lead").GetInt32(), minLead, maxLead);
        }
    }

    [Fact]
    public async Task Bad_app_options_fail_before_any_node_starts()
    {
        using var run = await Pserver.RunAsync(Limit, "local", "--app", "counter", "--consistency", "strong");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("sequential, eventual or bounded:TAU", run.Stderr);
        Assert.DoesNotContain("[scheduler]", run.Stdout);
    }

    [Fact]
    public async Task Options_come_from_environment_and_config_file()
    {
        string config = Path.Combine(Path.GetTempPath(), $"ps-config-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{ "keys": 7, "rounds": 3, "workers": 1, "servers": 1 }""");
        try
        {
            using var run = await Pserver.RunAsync(Limit, "local", "--config", config, "--app", "counter", "--json");
            Assert.True(run.ExitCode == 0, run.Describe());
            var summary = Summary(run);
            Assert.Equal(7, summary.GetProperty("keys").GetInt32());
            Assert.Equal(3, summary.GetProperty("pushes").GetInt32());
        }
        finally
        {
            File.Delete(config);
        }
    }
}
