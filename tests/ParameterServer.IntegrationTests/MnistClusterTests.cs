using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver train mnist` and `pserver predict` on the real MNIST files, through real local clusters.</summary>
[Collection("processes")]
public sealed class MnistClusterTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-mnist-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Lenet5_trains_on_a_subset_with_downpour_over_2_servers_and_the_saved_model_predicts_the_same()
    {
        string model = Path.Combine(_dir, "lenet5.model");
        using var run = await Pserver.RunAsync(Limit, "train", "mnist", "--data", SharedData.MnistDirectory, "--servers", "2", "--workers", "2",
            "--epochs", "3", "--train-limit", "12000", "--test-limit", "2000", "--model-out", model, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var lines = run.StdoutLines.Where(l => l.StartsWith("{\"app\":\"mnist\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(3, lines.Count(l => l.TryGetProperty("epoch", out _)));
        var final = lines.Last();
        double accuracy = final.GetProperty("test_accuracy").GetDouble();
        Assert.True(accuracy > 0.95, run.Stdout);
        Assert.True(final.GetProperty("images_per_sec").GetDouble() > 0);
        Assert.True(final.GetProperty("bytes_sent").GetInt64() > 3 * 12000 / 64 * 61_706 * 4, "every step pushes the whole model"); // about 3 epochs of pushes
        Assert.Equal("downpour", final.GetProperty("optimizer").GetString());

        using var predict = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", SharedData.MnistDirectory, "--test-limit", "2000", "--json");
        Assert.True(predict.ExitCode == 0, predict.Describe());
        var scored = JsonDocument.Parse(predict.StdoutLines.Single()).RootElement;
        Assert.Equal(2000, scored.GetProperty("images").GetInt32());
        Assert.Equal(accuracy, scored.GetProperty("test_accuracy").GetDouble(), 6);
    }

    [Fact]
    public async Task Sandblaster_lbfgs_trains_an_mlp_with_work_units_shared_by_3_workers_and_vector_operations_on_2_servers()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "mnist", "--data", SharedData.MnistDirectory, "--servers", "2", "--workers", "3",
            "--model", "mlp:64", "--optimizer", "lbfgs", "--epochs", "3", "--train-limit", "6000", "--batch", "500", "--test-limit", "2000", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var lines = run.StdoutLines.Where(l => l.StartsWith("{\"app\":\"mnist\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var epochs = lines.Where(l => l.TryGetProperty("epoch", out _)).ToList();
        Assert.Equal(3, epochs.Count);
        // 3 x 6000 images in rounds of 2 x 500: each round a step, or a step halved when the loss rose.
        Assert.Equal(18, epochs[^1].GetProperty("iterations").GetInt32() + epochs[^1].GetProperty("steps_halved").GetInt32());
        Assert.True(epochs[^1].GetProperty("test_loss").GetDouble() < epochs[0].GetProperty("test_loss").GetDouble(), run.Stdout);
        var final = lines.Last();
        Assert.Equal("lbfgs", final.GetProperty("optimizer").GetString());
        Assert.True(final.GetProperty("test_accuracy").GetDouble() > 0.8, run.Stdout);
    }

    [Fact]
    public async Task Sandblaster_lbfgs_finishes_when_a_worker_is_killed_mid_run_its_units_going_to_the_others()
    {
        using var job = await ProcessCluster.StartAsync(1, 3, 1, "--app", "mnist", "--json", "--data", SharedData.MnistDirectory, "--model", "mlp:64",
            "--optimizer", "lbfgs", "--epochs", "4", "--train-limit", "6000", "--batch", "500", "--test-limit", "1000");
        var coordinator = await job.FirstWorkerAsync(w => w.Stdout.Contains("\"epoch\":1,", StringComparison.Ordinal));
        var victim = job.Workers.Single(w => w.Stderr.Contains("mnist rank 2/3", StringComparison.Ordinal));
        Assert.NotSame(coordinator, victim);
        victim.Process.Kill();
        await coordinator.WaitForExitAsync(Limit);
        Assert.True(coordinator.ExitCode == 0, job.Describe());
        var epochs = coordinator.StdoutLines.Where(l => l.StartsWith("{\"app\":\"mnist\",\"epoch\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(4, epochs.Count);
        // No round lost: 4 x 6000 images in rounds of 2 x 500 (a short round runs again and costs no budget).
        Assert.Equal(24, epochs[^1].GetProperty("iterations").GetInt32() + epochs[^1].GetProperty("steps_halved").GetInt32());
        Assert.True(epochs[^1].GetProperty("test_accuracy").GetDouble() > 0.8, coordinator.Stdout);
    }

    [Fact]
    public async Task Sandblaster_lbfgs_backs_up_a_stragglers_units_and_does_not_wait_for_it()
    {
        // Rank 2 of 3 sleeps 1 s in every unit; the others take a few ms. Without backups every round would wait for
        // it: 8 rounds x 1 s at least. With them its unit goes to another worker after 3x their unit time (>= 50 ms).
        using var run = await Pserver.RunAsync(Limit, "train", "mnist", "--data", SharedData.MnistDirectory, "--servers", "1", "--workers", "3",
            "--model", "mlp:32", "--optimizer", "lbfgs", "--epochs", "2", "--train-limit", "4000", "--batch", "500", "--test-limit", "1000",
            "--straggler-ms", "1000", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var epochs = run.StdoutLines.Where(l => l.StartsWith("{\"app\":\"mnist\",\"epoch\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(2, epochs.Count);
        Assert.Equal(8, epochs[^1].GetProperty("iterations").GetInt32() + epochs[^1].GetProperty("steps_halved").GetInt32());
        Assert.True(epochs[^1].GetProperty("backups").GetInt32() >= 1, run.Stdout);
        Assert.True(epochs[^1].GetProperty("seconds").GetDouble() < 6, run.Stdout);
        Assert.True(epochs[^1].GetProperty("test_loss").GetDouble() < epochs[0].GetProperty("test_loss").GetDouble(), run.Stdout);
    }

    [Fact]
    public async Task A_truncated_idx_file_stops_the_job_with_an_error_naming_the_file()
    {
        foreach (string file in Directory.GetFiles(SharedData.MnistDirectory, "*.gz"))
        {
            File.Copy(file, Path.Combine(_dir, Path.GetFileName(file)));
        }
        string labels = Path.Combine(_dir, "t10k-labels-idx1-ubyte.gz");
        using (var gz = new System.IO.Compression.GZipStream(File.Create(labels), System.IO.Compression.CompressionLevel.Fastest))
        {
            gz.Write([0, 0, 8, 1, 0, 0, 0x27, 0x10, 1, 2, 3]); // 10,000 labels announced, 3 present
        }
        using var run = await Pserver.RunAsync(Limit, "train", "mnist", "--data", _dir, "--servers", "1", "--workers", "1", "--epochs", "1");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("t10k-labels-idx1-ubyte.gz", run.Stderr);
        Assert.Contains("truncated", run.Stderr);
    }
}
