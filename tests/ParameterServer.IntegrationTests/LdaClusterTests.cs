using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver train lda` on the real KOS corpus through real local clusters.</summary>
[Collection("processes")]
public sealed class LdaClusterTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-lda-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Kos_trains_over_2_servers_and_2_workers_with_exact_counts_and_improving_likelihood()
    {
        string model = Path.Combine(_dir, "kos.model");
        using var run = await Pserver.RunAsync(Limit, "train", "lda", "--data", SharedData.KosDocWords, "--vocab", SharedData.KosVocabulary,
            "--servers", "2", "--workers", "2", "--topics", "10", "--iterations", "30", "--hold-out", "10", "--eval-every", "30", "--model-out", model, "--json",
            "--consistency", "sequential");
        Assert.True(run.ExitCode == 0, run.Describe());
        var lines = run.StdoutLines.Where(l => l.StartsWith("{\"app\":\"lda\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var iterations = lines.Where(l => l.TryGetProperty("iteration", out _)).ToList();
        Assert.Equal(30, iterations.Count);
        // Every training token is counted once at every iteration boundary: 9 of every 10 KOS documents.
        long tokens = iterations[0].GetProperty("counted_tokens").GetInt64();
        Assert.InRange(tokens, 400_000, 440_000);
        Assert.All(iterations, l => Assert.Equal(tokens, l.GetProperty("counted_tokens").GetInt64()));
        Assert.True(iterations[^1].GetProperty("loglik_per_token").GetDouble() > iterations[0].GetProperty("loglik_per_token").GetDouble() + 1, run.Stdout);
        var summary = lines[^1];
        Assert.InRange(summary.GetProperty("test_perplexity").GetDouble(), 1000, 2500);
        Assert.Equal(10, summary.GetProperty("top_words").GetArrayLength());

        // The model file: "K W alpha beta", then one line per word whose counts add up to the tokens.
        var modelLines = File.ReadAllLines(model);
        Assert.Equal("10 6906 0.1 0.1", modelLines[0]);
        Assert.Equal(6907, modelLines.Length);
        Assert.Equal(tokens, modelLines.Skip(1).Sum(l => l.Split(' ').Skip(1).Sum(long.Parse)));
    }

    [Fact]
    public async Task Under_bounded_delay_workers_run_without_barriers_learn_and_keep_every_token_counted()
    {
        string model = Path.Combine(_dir, "bounded.model");
        using var run = await Pserver.RunAsync(Limit, "train", "lda", "--data", SharedData.KosDocWords, "--vocab", SharedData.KosVocabulary,
            "--servers", "2", "--workers", "3", "--topics", "10", "--iterations", "25", "--eval-every", "100", "--model-out", model, "--json",
            "--consistency", "bounded:2");
        Assert.True(run.ExitCode == 0, run.Describe());
        var iterations = run.StdoutLines.Where(l => l.StartsWith("{\"app\":\"lda\",\"iteration\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(25, iterations.Count);
        Assert.True(iterations[^1].GetProperty("loglik_per_token").GetDouble() > iterations[0].GetProperty("loglik_per_token").GetDouble() + 1, run.Stdout);
        // Once every worker has finished, every KOS token is in the counts exactly once.
        var modelLines = File.ReadAllLines(model);
        Assert.Equal(467_714, modelLines.Skip(1).Sum(l => l.Split(' ').Skip(1).Sum(long.Parse)));
        Assert.Equal(467_714, iterations[^1].GetProperty("counted_tokens").GetInt64());
    }

    [Fact]
    public async Task Int_count_tables_stay_exact_when_a_server_is_killed_mid_run_with_two_copies()
    {
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "lda", "--json", "--data", SharedData.KosDocWords, "--vocab", SharedData.KosVocabulary,
            "--topics", "10", "--iterations", "40", "--eval-every", "100", "--consistency", "sequential");
        var coordinator = await job.FirstWorkerAsync(w => w.Stdout.Contains("\"iteration\":5,", StringComparison.Ordinal));
        job.Servers[1].Process.Kill();
        await coordinator.WaitForExitAsync(Limit);
        Assert.True(coordinator.ExitCode == 0, job.Describe());
        var iterations = coordinator.StdoutLines.Where(l => l.StartsWith("{\"app\":\"lda\",\"iteration\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(40, iterations.Count);
        Assert.Contains("is dead", job.Scheduler.Stderr, StringComparison.Ordinal);
        // Every KOS token, counted once, at every iteration boundary before and after the kill: no count lost or doubled.
        Assert.All(iterations, l => Assert.Equal(467_714, l.GetProperty("counted_tokens").GetInt64()));
        Assert.True(iterations[^1].GetProperty("loglik_per_token").GetDouble() > iterations[0].GetProperty("loglik_per_token").GetDouble(), coordinator.Stdout);
    }

    [Fact]
    public async Task The_final_checkpoint_holds_the_int_counts_exactly()
    {
        string checkpoints = Path.Combine(_dir, "checkpoints");
        using (var run = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "2", "--app", "lda", "--json", "--data", SharedData.KosDocWords,
            "--topics", "5", "--iterations", "3", "--checkpoint-dir", checkpoints))
        {
            Assert.True(run.ExitCode == 0, run.Describe());
        }
        using var verify = await Pserver.RunAsync(Limit, "checkpoint", "verify", checkpoints, "--json");
        Assert.True(verify.ExitCode == 0, verify.Describe());
        var report = JsonDocument.Parse(verify.StdoutLines.Last(l => l.StartsWith("{\"ok\"", StringComparison.Ordinal))).RootElement;
        var tables = report.GetProperty("tables").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!);
        // Read back as integers: every KOS token once in the word-topic counts, once in the totals.
        Assert.Equal(467_714, tables["lda.word-topic"].GetProperty("value_sum").GetDouble());
        Assert.Equal(467_714, tables["lda.topic-totals"].GetProperty("value_sum").GetDouble());
        Assert.Equal(6906, tables["lda.word-topic"].GetProperty("rows").GetInt64());
    }

    [Fact]
    public async Task A_word_id_beyond_the_vocabulary_stops_the_job_naming_file_and_line()
    {
        string docword = Path.Combine(_dir, "docword.txt");
        File.WriteAllText(docword, "2\n3\n2\n1 1 2\n2 4 1\n");
        using var run = await Pserver.RunAsync(Limit, "train", "lda", "--data", docword, "--servers", "1", "--workers", "1", "--iterations", "2");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("docword.txt:5: word id 4 is outside 1..3", run.Stderr);
    }
}
