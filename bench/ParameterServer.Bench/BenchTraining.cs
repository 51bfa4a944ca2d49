using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Apps.LogReg;
using ParameterServer.Client;

using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>Training benchmarks: `pserver bench logreg` (throughput vs a single-process baseline) and `pserver bench consistency` (the paper's Fig. 13).</summary>
public static class BenchTraining
{
    /// <summary>--repeat.</summary>
    public static readonly Option<int> Repeat = PsOptions.Create("--repeat", 30, "Concatenate the data this many times, so an epoch is long enough to be steady");

    /// <summary>--metrics (bench logreg).</summary>
    public static readonly Option<bool> WithMetrics = PsOptions.Create("--metrics", false, "Also run the cluster with every node serving /metrics, and print the ratio");

    /// <summary>`pserver bench logreg`: training throughput against the single-process baseline; returns the exit code.</summary>
    public static async Task<int> RunLogRegAsync(ParseResult p, CancellationToken ct)
    {
        if (p.GetValue(BenchSolvers.Against) is { } against)
        {
            return against == "liblinear"
                ? await BenchSolvers.RunAsync(p, ct)
                : throw new ArgumentException($"--against must be liblinear, got '{against}'");
        }
        string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("bench logreg needs --data FILE (e.g. ../shared/data/a9a/a9a)");
        int epochs = Math.Max(2, p.GetResult(LogRegAppDefinition.Epochs) is { Implicit: false } ? p.GetValue(LogRegAppDefinition.Epochs) : 3);
        int batch = p.GetValue(LogRegAppDefinition.Batch) ?? 1000;
        var options = new LogRegOptions { Data = data, Solver = "online", Batch = batch, Epochs = epochs, Optimizer = p.GetValue(LogRegAppDefinition.Optimizer) ?? "ftrl", Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!) };
        options.Validate();
        string file = RepeatFile(data, p.GetValue(Repeat));
        try
        {
            // The baseline: the same trainer and the same store and handler the servers use, in this process.
            var rates = LogRegBaseline.Measure(options, file, ct);
            double baseline = SteadyState(rates);

            var job = QuietJob(1, 1, ["--json", "--app", "logreg", "--data", file, "--epochs", LocalJob.Inv(epochs), "--batch", LocalJob.Inv(batch),
                "--optimizer", options.Optimizer, "--consistency", options.Consistency.ToString()]);
            double cluster = SteadyState((await EpochsAsync(job, "the 1x1 cluster", ct)).Select(e => e.GetProperty("examples_per_sec").GetDouble()).ToList());
            // --metrics: the same cluster again with every node serving /metrics (and its meter listened to).
            double? withMetrics = p.GetValue(WithMetrics)
                ? SteadyState((await EpochsAsync(job with { MetricsPort = 0 }, "the 1x1 cluster with metrics", ct)).Select(e => e.GetProperty("examples_per_sec").GetDouble()).ToList())
                : null;
            long rows = LibSvmReader.CountRows(file, 0, 1, new LibSvmOptions());
            if (p.GetValue(PsOptions.Json))
            {
                var line = new Dictionary<string, object>
                {
                    ["bench"] = "logreg",
                    ["rows_per_epoch"] = rows,
                    ["epochs"] = epochs,
                    ["batch"] = batch,
                    ["baseline_examples_per_sec"] = Math.Round(baseline),
                    ["cluster_examples_per_sec"] = Math.Round(cluster),
                    ["ratio"] = Math.Round(cluster / baseline, 3),
                };
                if (withMetrics is { } on)
                {
                    line["metrics_examples_per_sec"] = Math.Round(on);
                    line["metrics_ratio"] = Math.Round(on / cluster, 3);
                }
                Console.Out.WriteLine(JsonSerializer.Serialize(line));
            }
            else
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"logreg on {rows:N0} rows x {epochs} epochs, batch {batch}, {options.Optimizer}, {options.Consistency}:\n  single process (weights in local memory): {baseline,12:N0} examples/s\n  1 server x 1 worker (TCP, two processes): {cluster,12:N0} examples/s  ({cluster / baseline:0.00} x the baseline)"));
                if (withMetrics is { } on)
                {
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  the same, every node serving /metrics:     {on,12:N0} examples/s  ({on / cluster:0.00} x without)"));
                }
            }
            return ExitCodes.Ok;
        }
        finally
        {
            if (file != data)
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>--taus.</summary>
    public static readonly Option<string> Taus = PsOptions.Create("--taus", "0,1,2,4,8,16,inf", "Bounded delays to compare (0 = sequential, inf = eventual)");
    /// <summary>--target-logloss.</summary>
    public static readonly Option<double?> Target = PsOptions.Create<double?>("--target-logloss", null, "Test log loss to reach (default: 0.2% above the best final loss of all runs)");

    /// <summary>`pserver bench consistency`: time to a test log loss for each bounded delay; returns the exit code.</summary>
    public static async Task<int> RunConsistencyAsync(ParseResult p, CancellationToken ct)
    {
        if (p.GetValue(LogRegAppDefinition.Solver) is "bpg")
        {
            return await RunBpgDelaysAsync(p, ct);
        }
        string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("bench consistency needs --data FILE and --test FILE");
        string test = p.GetValue(LogRegAppDefinition.Test) ?? throw new ArgumentException("bench consistency needs --test FILE");
        var taus = p.GetValue(Taus)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(t => t == "inf" ? Client.Consistency.Eventual : Client.Consistency.BoundedDelay(int.Parse(t, CultureInfo.InvariantCulture)))
            .ToList();
        int repeat = p.GetResult(Repeat) is { Implicit: false } ? p.GetValue(Repeat) : 1;
        string file = RepeatFile(data, repeat);
        var runs = new List<(Consistency Tau, List<JsonElement> Epochs)>();
        try
        {
            foreach (var tau in taus)
            {
                Console.Error.WriteLine($"bench consistency: training with {tau}...");
                var job = QuietJob(p.GetValue(LocalCluster.Servers), p.GetValue(LocalCluster.Workers), ["--json", "--app", "logreg", "--data", Path.GetFullPath(file), "--test", Path.GetFullPath(test),
                    "--epochs", LocalJob.Inv(p.GetValue(LogRegAppDefinition.Epochs)), "--batch", LocalJob.Inv(p.GetValue(LogRegAppDefinition.Batch) ?? 100),
                    "--optimizer", p.GetValue(LogRegAppDefinition.Optimizer) ?? "ftrl", "--consistency", tau.ToString()]);
                runs.Add((tau, await EpochsAsync(job, $"training with {tau}", ct)));
            }
        }
        finally
        {
            if (file != data)
            {
                File.Delete(file);
            }
        }
        double best = runs.Min(r => r.Epochs[^1].GetProperty("test_logloss").GetDouble());
        double target = p.GetValue(Target) ?? best * 1.002;
        bool json = p.GetValue(PsOptions.Json);
        if (!json)
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"target test logloss {target:0.0000}"));
            Console.Out.WriteLine($"{"tau",-11} {"epochs",7} {"seconds",8} {"waiting",8} {"final logloss",14} {"accuracy",9}");
        }
        foreach (var (tau, epochs) in runs)
        {
            double seconds = 0;
            int reached = -1;
            for (int i = 0; i < epochs.Count && reached < 0; i++)
            {
                seconds += epochs[i].GetProperty("seconds").GetDouble();
                if (epochs[i].GetProperty("test_logloss").GetDouble() <= target)
                {
                    reached = i + 1;
                }
            }
            double wait = epochs.Average(e => e.GetProperty("wait_fraction").GetDouble());
            double final = epochs[^1].GetProperty("test_logloss").GetDouble();
            double accuracy = epochs[^1].GetProperty("test_accuracy").GetDouble();
            string name = tau.Tau switch { 0 => "0 (seq)", int.MaxValue => "inf (ev)", _ => tau.Tau.ToString(CultureInfo.InvariantCulture) };
            if (json)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["bench"] = "consistency",
                    ["tau"] = tau.Tau == int.MaxValue ? "inf" : tau.Tau,
                    ["target_logloss"] = Math.Round(target, 6),
                    ["epochs_to_target"] = reached > 0 ? reached : null,
                    ["seconds_to_target"] = reached > 0 ? Math.Round(seconds, 3) : null,
                    ["wait_fraction"] = Math.Round(wait, 4),
                    ["final_test_logloss"] = final,
                    ["final_test_accuracy"] = accuracy,
                }));
            }
            else
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{name,-11} {(reached > 0 ? reached.ToString(CultureInfo.InvariantCulture) : "-"),7} {(reached > 0 ? seconds.ToString("0.00", CultureInfo.InvariantCulture) : "not reached"),8} {wait * 100,7:0.0}% {final,14:0.0000} {accuracy * 100,8:0.00}%"));
            }
        }
        return ExitCodes.Ok;
    }

    /// <summary>--target-objective.</summary>
    public static readonly Option<double?> TargetObjective = PsOptions.Create<double?>("--target-objective", null, "bench consistency --solver bpg: objective to reach (default: 0.1% above the best of all runs)");

    /// <summary>
    /// `bench consistency --solver bpg`: the paper's Fig. 13 with its own solver, time to a target objective for each
    /// delay tau (a worker may start tau blocks before the servers answered an earlier one).
    /// </summary>
    private static async Task<int> RunBpgDelaysAsync(ParseResult p, CancellationToken ct)
    {
        string data = p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("bench consistency needs --data FILE");
        var taus = p.GetValue(Taus)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(t => t != "inf") // bpg's delay is bounded by the block count
            .Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToList();
        int repeat = p.GetResult(Repeat) is { Implicit: false } ? p.GetValue(Repeat) : 1;
        string file = RepeatFile(data, repeat);
        var runs = new List<(int Tau, List<(double Seconds, double Objective)> Path)>();
        try
        {
            foreach (int tau in taus)
            {
                Console.Error.WriteLine($"bench consistency: bpg with delay {tau}...");
                var arguments = new List<string> { "--json", "--app", "logreg", "--data", Path.GetFullPath(file), "--solver", "bpg", "--delay", LocalJob.Inv(tau) };
                foreach (var option in new Option[] { LogRegAppDefinition.Blocks, LogRegAppDefinition.L1, LogRegAppDefinition.L2, LogRegAppDefinition.MaxIterations, LogRegAppDefinition.Tolerance })
                {
                    if (p.GetResult(option) is { Implicit: false } given)
                    {
                        arguments.AddRange([option.Name, .. given.Tokens.Select(t => t.Value)]);
                    }
                }
                var run = await LocalJob.RunAsync(QuietJob(p.GetValue(LocalCluster.Servers), p.GetValue(LocalCluster.Workers), arguments), ct);
                if (run.Failure is not null)
                {
                    throw new PsException(PsErrorCode.Internal, $"bpg with delay {tau} failed: {run.Failure}");
                }
                var iterations = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("iteration", out _)).ToList();
                double elapsed = 0;
                var path = new List<(double, double)>();
                foreach (var e in iterations)
                {
                    elapsed += e.GetProperty("seconds").GetDouble();
                    path.Add((elapsed, e.GetProperty("objective").GetDouble()));
                }
                runs.Add((tau, path));
            }
        }
        finally
        {
            if (file != data)
            {
                File.Delete(file);
            }
        }
        double best = runs.Min(r => r.Path[^1].Objective);
        double target = p.GetValue(TargetObjective) ?? best * 1.001;
        bool json = p.GetValue(PsOptions.Json);
        if (!json)
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bpg: time to objective {target:0.###} (0.1% above the best run) for each delay tau"));
            Console.Out.WriteLine($"{"tau",-5} {"iterations",10} {"seconds",12} {"final objective",16} {"iterations run",15}");
        }
        foreach (var (tau, path) in runs)
        {
            int reached = path.FindIndex(x => x.Objective <= target);
            if (json)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["bench"] = "consistency_bpg",
                    ["tau"] = tau,
                    ["target_objective"] = Math.Round(target, 4),
                    ["iterations_to_target"] = reached >= 0 ? reached + 1 : null,
                    ["seconds_to_target"] = reached >= 0 ? Math.Round(path[reached].Seconds, 3) : null,
                    ["final_objective"] = Math.Round(path[^1].Objective, 4),
                    ["iterations"] = path.Count,
                }));
            }
            else
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{tau,-5} {(reached >= 0 ? (reached + 1).ToString(CultureInfo.InvariantCulture) : "-"),10} {(reached >= 0 ? path[reached].Seconds.ToString("0.00", CultureInfo.InvariantCulture) : "not reached"),12} {path[^1].Objective,16:0.000} {path.Count,15}"));
            }
        }
        return ExitCodes.Ok;
    }

    /// <summary>A local job that prints nothing but the workers' result lines (collected, not echoed).</summary>
    internal static LocalJobSpec QuietJob(int servers, int workers, IReadOnlyList<string> workerArguments) => new()
    {
        Servers = servers,
        Workers = workers,
        LogLevel = "warning",
        ResultsOnly = true,
        ShowProgress = false,
        Echo = false,
        WorkerArguments = workerArguments,
    };

    /// <summary>Runs a training job without echoing it and returns rank 0's per-epoch JSON objects.</summary>
    internal static async Task<List<JsonElement>> EpochsAsync(LocalJobSpec job, string what, CancellationToken ct)
    {
        var run = await LocalJob.RunAsync(job, ct);
        if (run.Failure is not null)
        {
            throw new PsException(PsErrorCode.Internal, $"{what} failed: {run.Failure}");
        }
        return run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("epoch", out _)).ToList();
    }

    /// <summary>Median of the epochs after the first (which pays for JIT and cold caches).</summary>
    internal static double SteadyState(List<double> rates)
    {
        var steady = rates.Skip(1).Order().ToList();
        return steady.Count == 0 ? double.NaN : steady[steady.Count / 2];
    }

    internal static string RepeatFile(string data, int repeat)
    {
        if (!File.Exists(data))
        {
            throw new ArgumentException($"--data '{data}' does not exist");
        }
        if (repeat <= 1)
        {
            return data;
        }
        string path = Path.Combine(Path.GetTempPath(), $"pserver-bench-{Guid.NewGuid():N}.libsvm");
        byte[] bytes = File.ReadAllBytes(data);
        using var output = File.Create(path);
        for (int i = 0; i < repeat; i++)
        {
            output.Write(bytes);
            if (bytes.Length > 0 && bytes[^1] != (byte)'\n')
            {
                output.WriteByte((byte)'\n');
            }
        }
        return path;
    }
}
