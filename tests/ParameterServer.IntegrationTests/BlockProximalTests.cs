using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
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
    public async Task A_delay_trades_progress_per_iteration_but_still_lowers_the_objective()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--solver", "bpg", "--delay", "4", "--blocks", "16", "--max-iterations", "20", "--workers", "2", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var objectives = Lines(run, iterations: true).Select(e => e.GetProperty("objective").GetDouble()).ToArray();
        Assert.True(objectives.All(double.IsFinite) && objectives[^1] < objectives[0] * 0.97, string.Join(", ", objectives));
    }

    [Theory]
    [InlineData("l2", 0, 1)]
    [InlineData("l1", 1, 0)]
    public async Task Bpg_converges_on_a9a_to_liblinears_objective_and_accuracy(string name, double l1, double l2)
    {
        string model = Path.Combine(_dir, $"{name}.model");
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--solver", "bpg",
            "--l1", l1.ToString(CultureInfo.InvariantCulture), "--l2", l2.ToString(CultureInfo.InvariantCulture), "--workers", "2", "--model-out", model, "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var final = Lines(run, iterations: false).Single();
        Assert.True(final.GetProperty("converged").GetBoolean(), run.Stdout);
        double objective = final.GetProperty("objective").GetDouble();
        double accuracy = final.GetProperty("test_accuracy").GetDouble();
        Assert.True(accuracy >= 0.845 && final.GetProperty("test_auc").GetDouble() >= 0.90, run.Stdout);

        // The model file scores the test rows as the job did.
        using var predict = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", SharedData.A9aTest, "--json");
        Assert.True(predict.ExitCode == 0, predict.Describe());
        Assert.Equal(accuracy, JsonDocument.Parse(predict.StdoutLines.Single()).RootElement.GetProperty("test_accuracy").GetDouble(), 4);

        if (!File.Exists(LibLinear.Train))
        {
            output.WriteLine($"liblinear not installed ({LibLinear.Train}): objective {objective} not compared");
            return;
        }
        // liblinear's primal is C x ours with C = 1/l2 (-s 0) or 1/l1 (-s 6); both regularise the bias like we do (-B 1).
        string reference = Path.Combine(_dir, $"{name}.liblinear");
        LibLinear.Run(l1 > 0 ? "-s 6" : "-s 0", 1 / (l1 > 0 ? l1 : l2), SharedData.A9a, reference);
        double optimum = LibLinear.Objective(reference, SharedData.A9a, l1, l2);
        output.WriteLine($"{name}: bpg objective {objective:0.###} after {final.GetProperty("iterations")} iterations, liblinear {optimum:0.###} ({(objective - optimum) / optimum:P4} above)");
        Assert.True(objective <= optimum * 1.001, $"bpg {objective} vs liblinear {optimum}");
        Assert.True(objective >= optimum * (1 - 1e-5), $"bpg {objective} below liblinear's optimum {optimum}: the objectives are not computed alike");
    }
}

/// <summary>Debian's liblinear-tools, as the reference solver.</summary>
internal static class LibLinear
{
    public const string Train = "/usr/bin/liblinear-train";

    /// <summary>Trains to a tight tolerance with a regularised bias feature (-B 1).</summary>
    public static void Run(string solver, double c, string data, string model)
    {
        var info = new ProcessStartInfo(Train) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in solver.Split(' ').Concat(["-c", c.ToString(CultureInfo.InvariantCulture), "-B", "1", "-e", "0.0001", "-q", data, model]))
        {
            info.ArgumentList.Add(a);
        }
        using var process = Process.Start(info)!;
        string err = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000) && process.ExitCode == 0, $"liblinear-train failed: {err}");
    }

    /// <summary>Our objective (sum of log losses + l1 |w|_1 + l2/2 |w|^2) of a liblinear model on a LIBSVM file.</summary>
    public static double Objective(string model, string data, double l1, double l2)
    {
        var lines = File.ReadAllLines(model);
        int positive = int.Parse(lines.First(l => l.StartsWith("label ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        int features = int.Parse(lines.First(l => l.StartsWith("nr_feature ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        double bias = double.Parse(lines.First(l => l.StartsWith("bias ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        var w = lines.SkipWhile(l => l != "w").Skip(1).Where(l => l.Trim().Length > 0).Select(l => double.Parse(l.Trim(), CultureInfo.InvariantCulture)).ToArray();
        double loss = 0;
        foreach (string line in File.ReadLines(data))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0)
            {
                continue;
            }
            int y = (int)double.Parse(parts[0], CultureInfo.InvariantCulture) == positive ? 1 : -1;
            double z = bias > 0 ? w[features] * bias : 0;
            foreach (string pair in parts.Skip(1))
            {
                int colon = pair.IndexOf(':', StringComparison.Ordinal);
                int index = int.Parse(pair.AsSpan(0, colon), CultureInfo.InvariantCulture);
                z += index <= features ? w[index - 1] * double.Parse(pair.AsSpan(colon + 1), CultureInfo.InvariantCulture) : 0;
            }
            double m = y * z;
            loss += m > 0 ? Math.Log(1 + Math.Exp(-m)) : -m + Math.Log(1 + Math.Exp(m));
        }
        return loss + (l1 * w.Sum(Math.Abs)) + (l2 / 2 * w.Sum(v => v * v));
    }
}
