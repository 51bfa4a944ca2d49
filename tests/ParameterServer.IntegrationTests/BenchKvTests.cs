using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver bench kv` runs real processes and prints one line per measurement (a smoke test, not a speed check).</summary>
[Collection("processes")]
public class BenchKvTests
{
    [Fact]
    public async Task Bench_kv_prints_one_json_line_per_case_with_a_loopback_limit()
    {
        using var run = await Pserver.RunAsync(TimeSpan.FromSeconds(120), "bench", "kv", "--servers", "2", "--workers", "2", "--json",
            "--duration", "0.2", "--sizes", "4KB,64KB", "--window", "1,4", "--ops", "push,pull", "--rtt-sizes", "4B", "--rtt-window", "1");
        Assert.True(run.ExitCode == 0, run.Describe());
        var lines = run.StdoutLines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(2 * 2 * 2 + 1, lines.Count);
        Assert.All(lines, l =>
        {
            Assert.Equal("kv", l.GetProperty("bench").GetString());
            Assert.Equal(2, l.GetProperty("servers").GetInt32());
            Assert.Equal(2, l.GetProperty("workers").GetInt32());
            Assert.True(l.GetProperty("requests_per_sec").GetDouble() > 0, l.ToString());
            Assert.True(l.GetProperty("p99_us").GetDouble() >= l.GetProperty("p50_us").GetDouble(), l.ToString());
            Assert.True(l.GetProperty("limit_gbps").GetDouble() > 0, l.ToString());
        });
        var rtt = lines[^1];
        Assert.Equal("rtt", rtt.GetProperty("op").GetString());
        Assert.Equal(4, rtt.GetProperty("size_bytes").GetInt32());
    }

    [Fact]
    public async Task Bench_kv_refuses_a_bad_size()
    {
        using var run = await Pserver.RunAsync(TimeSpan.FromSeconds(60), "bench", "kv", "--sizes", "12XB");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("unknown unit", run.Stderr, StringComparison.Ordinal);
    }
}
