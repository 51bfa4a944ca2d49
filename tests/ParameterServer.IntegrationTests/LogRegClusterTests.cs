using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver train logreg` on real data through real local clusters.</summary>
[Collection("processes")]
public sealed class LogRegClusterTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(180);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-logreg-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static JsonElement Final(Pserver run)
    {
        var line = run.StdoutLines.LastOrDefault(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal) && !l.Contains("\"epoch\"", StringComparison.Ordinal))
            ?? throw new Xunit.Sdk.XunitException($"no final summary; {run.Describe()}");
        return JsonDocument.Parse(line).RootElement;
    }

    [Fact]
    public async Task The_online_solvers_defaults_on_a9a_match_liblinear_and_the_model_predicts_the_same()
    {
        string model = System.IO.Path.Combine(_dir, "a9a.model");
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest,
            "--solver", "online", "--servers", "2", "--workers", "2", "--model-out", model, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var epochs = run.StdoutLines.Where(l => l.Contains("\"epoch\"", StringComparison.Ordinal)).ToList();
        Assert.Equal(10, epochs.Count);
        var final = Final(run);
        Assert.True(final.GetProperty("test_accuracy").GetDouble() >= 0.849, run.Stdout);
        Assert.True(final.GetProperty("test_auc").GetDouble() >= 0.900, run.Stdout);
        Assert.True(final.GetProperty("nonzero_weights").GetInt32() is > 50 and <= 124);
        Assert.True(final.GetProperty("bytes_sent").GetInt64() > 1_000_000);
        Assert.True(final.GetProperty("examples_per_sec").GetDouble() > 0);

        using var predict = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", SharedData.A9aTest, "--json");
        Assert.True(predict.ExitCode == 0, predict.Describe());
        var scored = JsonDocument.Parse(predict.StdoutLines.Single()).RootElement;
        Assert.Equal(16281, scored.GetProperty("rows").GetInt32());
        Assert.Equal(final.GetProperty("test_accuracy").GetDouble(), scored.GetProperty("test_accuracy").GetDouble(), 4);
        Assert.Equal(final.GetProperty("test_auc").GetDouble(), scored.GetProperty("test_auc").GetDouble(), 3);
    }

    [Fact]
    public async Task Sequential_training_is_deterministic()
    {
        var finals = new List<string>();
        var models = new List<byte[]>();
        for (int run = 0; run < 2; run++)
        {
            string model = System.IO.Path.Combine(_dir, $"seq{run}.model");
            using var p = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest,
                "--servers", "2", "--workers", "3", "--epochs", "2", "--consistency", "sequential", "--model-out", model, "--json");
            Assert.True(p.ExitCode == 0, p.Describe());
            var final = Final(p);
            finals.Add($"{final.GetProperty("test_accuracy")} {final.GetProperty("test_auc")} {final.GetProperty("test_logloss")}");
            models.Add(await File.ReadAllBytesAsync(model));
        }
        Assert.Equal(finals[0], finals[1]);
        Assert.Equal(models[0], models[1]);
    }

    [Fact]
    public async Task Key_caching_even_with_evictions_lossless_compression_and_a_zero_threshold_pull_filter_give_the_same_model_bit_for_bit()
    {
        // Sequential training is deterministic, so lossless traffic options must not change one bit of the model. A pull
        // filter with threshold 0 leaves out only weights that did not change since the worker was last sent them.
        var models = new List<byte[]>();
        var workersSent = new List<long>();
        var serversSent = new List<long>();
        // The last run gives servers 2 KiB of key cache per worker: lists are evicted, signatures miss, keys are resent.
        foreach (string[] traffic in new[] { Array.Empty<string>(), ["--key-cache", "--compress", "zero+lz"], ["--pull-filter", "sigmod:0"], ["--key-cache", "--key-cache-mb", "0.002"] })
        {
            string model = System.IO.Path.Combine(_dir, $"traffic{models.Count}.model");
            using var p = await Pserver.RunAsync(Limit, ["train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest,
                "--servers", "2", "--workers", "2", "--epochs", "2", "--consistency", "sequential", "--model-out", model, "--json", .. traffic]);
            Assert.True(p.ExitCode == 0, p.Describe());
            var final = Final(p);
            models.Add(await File.ReadAllBytesAsync(model));
            workersSent.Add(final.GetProperty("traffic").GetProperty("workers_sent").GetInt64());
            serversSent.Add(final.GetProperty("traffic").GetProperty("servers_sent").GetInt64());
        }
        Assert.Equal(models[0], models[1]);
        Assert.Equal(models[0], models[2]);
        Assert.Equal(models[0], models[3]);
        Assert.True(workersSent[1] < workersSent[0] * 0.75, $"workers sent {workersSent[1]} bytes with key caching, {workersSent[0]} without");
        Assert.True(serversSent[2] < serversSent[0], $"servers sent {serversSent[2]} bytes with the pull filter, {serversSent[0]} without");
    }

    private string Write(string name, string text)
    {
        string path = System.IO.Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task A_malformed_line_stops_training_naming_file_and_line_unless_skipped()
    {
        string good = string.Concat(Enumerable.Range(0, 200).Select(i => $"{(i % 2 == 0 ? "+1" : "-1")} {1 + i % 7}:1 {10 + i % 3}:1\n"));
        string path = Write("bad.libsvm", good + "+1 5:1 0:1\n" + good);
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", path, "--servers", "1", "--workers", "2", "--epochs", "1");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"{path}:201: feature index 0 is not allowed", run.Stderr);

        using var skipped = await Pserver.RunAsync(Limit, "train", "logreg", "--data", path, "--servers", "1", "--workers", "2", "--epochs", "1", "--skip-bad-lines", "--json");
        Assert.True(skipped.ExitCode == 0, skipped.Describe());
        Assert.Contains("Skipped 1 malformed lines", skipped.Stderr);
    }

    [Fact]
    public async Task Missing_or_empty_data_fails_before_starting_a_cluster()
    {
        using var missing = await Pserver.RunAsync(Limit, "train", "logreg", "--data", System.IO.Path.Combine(_dir, "nope.libsvm"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("does not exist", missing.Stderr);
        using var empty = await Pserver.RunAsync(Limit, "train", "logreg", "--data", Write("empty.libsvm", ""));
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains("is empty", empty.Stderr);
        using var noData = await Pserver.RunAsync(Limit, "train", "logreg");
        Assert.Equal(2, noData.ExitCode);
        Assert.Contains("--data", noData.Stderr);
    }

    [Fact]
    public async Task An_unknown_option_exits_2_naming_it_and_the_help_to_read()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--bogus-flag");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("'--bogus-flag'", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("run `pserver train logreg --help` for its options", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Epochs_auto_stops_when_the_held_out_loss_stops_improving()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--epochs", "auto", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var epochs = run.StdoutLines.Where(l => l.Contains("\"epoch\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var losses = epochs.Select(e => e.GetProperty("validation_logloss").GetDouble()).ToList();
        Assert.InRange(epochs.Count, 2, 99);
        // It stops at the first epoch that does not beat the best so far by 0.01%, and not before.
        for (int i = 1; i < losses.Count; i++)
        {
            bool improved = losses[i] < losses.Take(i).Min() * (1 - 1e-4);
            Assert.True(improved == (i < losses.Count - 1), $"epoch {i + 1} of {losses.Count}: {string.Join(", ", losses)}");
        }
        var final = Final(run);
        Assert.Equal(epochs.Count, final.GetProperty("epochs").GetInt32());
        Assert.True(final.GetProperty("test_accuracy").GetDouble() >= 0.845, run.Stdout);
    }

    [Fact]
    public async Task An_online_option_given_to_bpg_exits_2_naming_it()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--solver", "bpg", "--epochs", "3", "--optimizer", "sgd");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("--epochs, --optimizer apply to --solver online, not bpg", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_empty_shard_and_unseen_test_features_are_handled()
    {
        string train = Write("one.libsvm", "+1 1:1 2:1\n");
        string test = Write("unseen.libsvm", "+1 1:1 99:1\n-1 98:1\n");
        foreach (string consistency in new[] { "bounded:4", "sequential" })
        {
            using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", train, "--test", test,
                "--servers", "1", "--workers", "2", "--epochs", "2", "--consistency", consistency, "--json");
            Assert.True(run.ExitCode == 0, run.Describe());
            Assert.Contains("has no training rows", run.Stderr);
            Assert.Equal(2, Final(run).GetProperty("epochs").GetInt32());
        }
        // bpg: the worker with no rows pushes empty blocks and the job still converges.
        using var batch = await Pserver.RunAsync(Limit, "train", "logreg", "--data", train, "--test", test, "--servers", "1", "--workers", "2", "--json");
        Assert.True(batch.ExitCode == 0, batch.Describe());
        Assert.True(Final(batch).GetProperty("converged").GetBoolean(), batch.Stdout);
    }
}
