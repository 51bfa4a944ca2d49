using System.Diagnostics;
using System.Text.Json;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Apps.Sketch.Streams;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver sketch`: ingestion through real local clusters, queries against a running job, and a server killed mid-stream.</summary>
[Collection("processes")]
public sealed class SketchClusterTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-sketch-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The sketch the job must end with: every worker's Zipf stream counted in one process.</summary>
    private static CountMinSketch Expected(long items, double zipf, long inserts, int workers, int seed = 1)
    {
        var sketch = new CountMinSketch(SketchShape.FromBounds(1e-4, 0.01));
        for (int rank = 0; rank < workers; rank++)
        {
            var stream = new ZipfStream(items, zipf, ((ulong)seed * 0x9E3779B97F4A7C15UL) + (ulong)rank);
            long share = (inserts / workers) + (rank < inserts % workers ? 1 : 0);
            for (long i = 0; i < share; i++)
            {
                sketch.Add(Items.HashOfId((ulong)stream.Next()));
            }
        }
        return sketch;
    }

    [Fact]
    public async Task A_zipf_stream_over_2_servers_and_2_workers_ends_with_the_exact_sketch_and_its_heavy_hitters()
    {
        string path = Path.Combine(_dir, "job.sketch");
        using var run = await Pserver.RunAsync(Limit, "sketch", "ingest", "--synthetic", "--items", "100000", "--zipf", "1.1", "--inserts", "3000000",
            "--servers", "2", "--workers", "2", "--top", "5", "--sketch-out", path, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var summary = JsonDocument.Parse(run.StdoutLines.Last(l => l.StartsWith("{\"app\":\"sketch\"", StringComparison.Ordinal))).RootElement;
        Assert.Equal(3_000_000, summary.GetProperty("inserts").GetInt64());
        Assert.Equal(3_000_000, summary.GetProperty("counted").GetInt64());
        Assert.Equal(27_183, summary.GetProperty("width").GetInt32());
        Assert.Equal(["1", "2", "3", "4", "5"], summary.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("item").GetString()));
        // Bit for bit the sketch of the same streams counted in this process: no flush lost or counted twice.
        Assert.Equal(Expected(100_000, 1.1, 3_000_000, 2).Counters, SketchFile.Read(path).Counters);
    }

    [Fact]
    public async Task A_text_file_split_among_3_workers_is_counted_once_and_its_heavy_hitters_are_the_true_ones()
    {
        string text = Path.Combine(_dir, "kos.txt");
        using (var expand = await Pserver.RunAsync(Limit, "data", "bow-text", "--data", SharedData.KosDocWords, "--vocab", SharedData.KosVocabulary, "--out", text))
        {
            Assert.True(expand.ExitCode == 0, expand.Describe());
        }
        string path = Path.Combine(_dir, "kos.sketch");
        using var run = await Pserver.RunAsync(Limit, "sketch", "ingest", "--data", text, "--servers", "2", "--workers", "3", "--top", "20", "--sketch-out", path, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var expected = new CountMinSketch(SketchShape.FromBounds(1e-4, 0.01));
        var exact = new Dictionary<string, long>();
        using (var items = TextItems.Open([text], 0, 1, 4096))
        {
            var hashes = new ulong[4096];
            int n;
            while ((n = items.Read(hashes)) > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    expected.Add(hashes[i]);
                    string word = System.Text.Encoding.UTF8.GetString(items.Token(i));
                    exact[word] = exact.GetValueOrDefault(word) + 1;
                }
            }
        }
        Assert.Equal(467_714, expected.Total());
        Assert.Equal(expected.Counters, SketchFile.Read(path).Counters);
        var summary = JsonDocument.Parse(run.StdoutLines.Last(l => l.StartsWith("{\"app\":\"sketch\"", StringComparison.Ordinal))).RootElement;
        var top = summary.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("item").GetString()!).ToList();
        Assert.Equal(exact.OrderByDescending(e => e.Value).ThenBy(e => e.Key, StringComparer.Ordinal).Take(20).Select(e => e.Key), top);
    }

    [Fact]
    public async Task A_running_job_answers_queries_and_a_job_without_a_sketch_says_so()
    {
        using var job = await ProcessCluster.StartAsync(2, 1, 2, "--app", "sketch", "--synthetic", "--items", "1000", "--zipf", "1.2", "--inserts", "2000000000", "--json");
        var deadline = DateTime.UtcNow + Limit;
        JsonElement answer = default;
        while (DateTime.UtcNow < deadline)
        {
            using var query = await Pserver.RunAsync(Limit, "sketch", "query", "--scheduler", job.Address, "--items", "1,2,999999", "--top", "3", "--json");
            string? line = query.StdoutLines.LastOrDefault(l => l.StartsWith("{\"query\"", StringComparison.Ordinal));
            if (query.ExitCode == 0 && line is not null && JsonDocument.Parse(line).RootElement.GetProperty("counted").GetInt64() > 0)
            {
                answer = JsonDocument.Parse(line).RootElement;
                break;
            }
            await Task.Delay(200); // the job had not recorded its shape or flushed yet
        }
        Assert.NotEqual(JsonValueKind.Undefined, answer.ValueKind);
        var estimates = answer.GetProperty("items").EnumerateArray().ToDictionary(e => e.GetProperty("item").GetString()!, e => e.GetProperty("estimate").GetInt64());
        Assert.True(estimates["1"] > estimates["2"] && estimates["2"] > 0, answer.ToString());
        Assert.Equal(["1", "2", "3"], answer.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("item").GetString()));
        Assert.False(job.Workers[0].Process.HasExited, "the query must leave the ingesting worker alone");

        using var counter = await ProcessCluster.StartAsync(1, 1, 1, "--app", "counter", "--rounds", "100000", "--pause-ms", "1");
        await counter.WaitUntilPushingAsync();
        using var refused = await Pserver.RunAsync(Limit, "sketch", "query", "--scheduler", counter.Address, "--top", "3");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("has no sketch (its tables: counter", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_killed_mid_stream_with_two_copies_loses_no_insert_and_counts_none_twice()
    {
        string path = Path.Combine(_dir, "kill.sketch");
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "sketch", "--synthetic", "--items", "200000", "--zipf", "1.05", "--inserts", "40000000",
            "--flush-every", "100000", "--sketch-out", path, "--json");
        var started = Stopwatch.StartNew();
        while (!job.Workers.All(w => w.Stderr.Contains("sketch rank", StringComparison.Ordinal)) && started.Elapsed < Limit)
        {
            await Task.Delay(20);
        }
        await Task.Delay(700); // flushes are going out
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the stream ended before the kill: make it longer");
        job.Servers[1].Process.Kill();
        var coordinator = await job.FirstWorkerAsync(w => w.Stdout.Contains("{\"app\":\"sketch\"", StringComparison.Ordinal));
        await coordinator.WaitForExitAsync(Limit);
        Assert.True(coordinator.ExitCode == 0, job.Describe());
        Assert.Contains("is dead", job.Scheduler.Stderr, StringComparison.Ordinal);
        var summary = JsonDocument.Parse(coordinator.StdoutLines.Last(l => l.StartsWith("{\"app\":\"sketch\"", StringComparison.Ordinal))).RootElement;
        // From a flush left without its server to the first answer from the keys' new owner.
        Assert.Equal(JsonValueKind.Number, summary.GetProperty("failover_ms").ValueKind);
        output.WriteLine($"failover: {summary.GetProperty("failover_ms").GetDouble()} ms; longest flush {summary.GetProperty("longest_flush_ms").GetDouble()} ms; {summary.GetProperty("inserts_per_sec").GetDouble():N0} inserts/s");
        Assert.Equal(40_000_000, summary.GetProperty("counted").GetInt64());
        Assert.Equal(Expected(200_000, 1.05, 40_000_000, 2).Counters, SketchFile.Read(path).Counters);
    }
}
