using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Bench;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>`train logreg --solver bpg` (delayed block proximal gradient) on a9a through real local clusters.</summary>
[Collection("processes")]
public sealed class BlockProximalTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-bpg-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<JsonElement> Lines(Pserver run, bool iterations) => run.StdoutLines
        .Where(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal))
        .Select(l => JsonDocument.Parse(l).RootElement)
        .Where(e => e.TryGetProperty("iteration", out _) == iterations)
        .ToList();

    [Fact]
    public async Task Sequential_bpg_never_raises_the_objective_and_two_workers_on_two_servers_follow_one_workers_path()
    {
        var paths = new List<double[]>();
        foreach (string[] cluster in new[] { new[] { "--servers", "1", "--workers", "1" }, ["--servers", "2", "--workers", "2"] })
        {
            using var run = await Pserver.RunAsync(Limit, ["train", "logreg", "--data", SharedData.A9a, "--solver", "bpg", "--max-iterations", "25", "--json", .. cluster]);
            Assert.True(run.ExitCode == 0, run.Describe());
            var objectives = Lines(run, iterations: true).Select(e => e.GetProperty("objective").GetDouble()).ToArray();
            Assert.Equal(25, objectives.Length);
            for (int i = 1; i < objectives.Length; i++)
            {
                Assert.True(objectives[i] <= objectives[i - 1] * (1 + 1e-9), $"iteration {i + 1} raised the objective: {objectives[i - 1]} -> {objectives[i]}");
            }
            Assert.True(objectives[^1] < objectives[0] * 0.97, string.Join(", ", objectives));
            paths.Add(objectives);
        }
        for (int i = 0; i < paths[0].Length; i++)
        {
            Assert.Equal(paths[0][i], paths[1][i], paths[0][i] * 1e-5);
        }
    }

    [Fact]
    public async Task Bpg_survives_a_server_killed_mid_training_with_two_copies_and_still_never_raises_the_objective()
    {
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--json");
        await Task.WhenAny(job.Workers.Select(w => w.WaitForLineAsync(l => l.Contains("\"iteration\":5,", StringComparison.Ordinal), Limit)));
        job.Servers[1].Process.Kill();
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "training ended before the kill");
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
        }
        var rank0 = job.Workers.First(w => w.StdoutLines.Any(l => l.Contains("\"iterations\"", StringComparison.Ordinal)));
        var final = Lines(rank0, iterations: false).Single();
        var objectives = Lines(rank0, iterations: true).Select(e => e.GetProperty("objective").GetDouble()).ToArray();
        output.WriteLine($"objective {final.GetProperty("objective")} after {final.GetProperty("iterations")} iterations, accuracy {final.GetProperty("test_accuracy")}");
        for (int i = 1; i < objectives.Length; i++)
        {
            Assert.True(objectives[i] <= objectives[i - 1] * (1 + 1e-9), $"iteration {i + 1} raised the objective across the failover: {objectives[i - 1]} -> {objectives[i]}");
        }
        Assert.True(final.GetProperty("converged").GetBoolean() && final.GetProperty("test_accuracy").GetDouble() >= 0.845, rank0.Stdout);
    }

    [Fact]
    public async Task A_delay_trades_progress_per_iteration_but_still_lowers_the_objective()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--solver", "bpg", "--delay", "4", "--blocks", "16", "--max-iterations", "20", "--workers", "2", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var objectives = Lines(run, iterations: true).Select(e => e.GetProperty("objective").GetDouble()).ToArray();
        Assert.True(objectives.All(double.IsFinite) && objectives[^1] < objectives[0] * 0.97, string.Join(", ", objectives));
    }

    [Fact]
    public async Task Bpg_converges_on_a9a_to_liblinears_objective_and_accuracy_and_its_model_predicts_the_same()
    {
        string model = Path.Combine(_dir, "bpg.model");
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--solver", "bpg",
            "--workers", "2", "--model-out", model, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var final = Lines(run, iterations: false).Single();
        Assert.True(final.GetProperty("converged").GetBoolean(), run.Stdout);
        double accuracy = final.GetProperty("test_accuracy").GetDouble();
        Assert.True(accuracy >= 0.845 && final.GetProperty("test_auc").GetDouble() >= 0.90, run.Stdout);
        using var predict = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", SharedData.A9aTest, "--json");
        Assert.True(predict.ExitCode == 0, predict.Describe());
        Assert.Equal(accuracy, JsonDocument.Parse(predict.StdoutLines.Single()).RootElement.GetProperty("test_accuracy").GetDouble(), 4);
        if (LibLinear.Unavailable is { } why)
        {
            output.WriteLine($"{why}: objective not compared");
            return;
        }
        // liblinear's primal is C x ours with C = 1/l2 (-s 0); it regularises the bias like we do (-B 1).
        string reference = Path.Combine(_dir, "liblinear.model");
        LibLinear.Train("-s 0", 1, 1e-4, SharedData.A9a, reference);
        double optimum = Predictor.Objective(LibLinear.ToModelFile(reference), SharedData.A9a, 0, 1);
        double objective = final.GetProperty("objective").GetDouble();
        output.WriteLine($"bpg objective {objective:0.###} after {final.GetProperty("iterations")} iterations, liblinear {optimum:0.###} ({(objective - optimum) / optimum:P4} above)");
        Assert.True(objective <= optimum * 1.001, $"bpg {objective} vs liblinear {optimum}");
        Assert.True(objective >= optimum * (1 - 1e-5), $"bpg {objective} below liblinear's optimum {optimum}: the objectives are not computed alike");
        // The objective the job reports is the one its model file has.
        Assert.Equal(objective, Predictor.Objective(ModelFile.Read(model), SharedData.A9a, 0, 1), objective * 1e-6);
    }

    [Fact]
    public async Task The_solver_comparison_with_l1_puts_bpg_and_owlqn_within_a_tenth_of_a_percent_of_liblinears_optimum()
    {
        if (LibLinear.Unavailable is { } why)
        {
            output.WriteLine($"skipped: {why}");
            return;
        }
        using var run = await Pserver.RunAsync(Limit, "bench", "logreg", "--against", "liblinear", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--l1", "1", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var rows = run.StdoutLines.Select(l => JsonDocument.Parse(l).RootElement).ToDictionary(e => e.GetProperty("solver").GetString()!);
        output.WriteLine(run.Stdout);
        Assert.Equal(0, rows["liblinear -s 6 -c 1 -e 0.0001"].GetProperty("above_optimum").GetDouble());
        var bpg = rows["bpg"];
        Assert.InRange(bpg.GetProperty("above_optimum").GetDouble(), -1e-5, 0.001);
        Assert.InRange(bpg.GetProperty("test_accuracy").GetDouble() - rows["liblinear -s 6 -c 1"].GetProperty("test_accuracy").GetDouble(), -0.002, 1);
        Assert.InRange(rows["owlqn"].GetProperty("above_optimum").GetDouble(), -1e-5, 0.001);
        Assert.True(rows.ContainsKey("online ftrl (10 epochs)") && rows.ContainsKey("bpg --delay 4"), run.Stdout);
    }
}
