using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench logreg --against liblinear`: each of our solvers and liblinear on the same split and the same
/// regularised objective (sum of log losses + l1 |w|_1 + l2/2 |w|^2, every model's objective computed here by the
/// same code), with accuracy, AUC and time.
/// </summary>
public static class BenchSolvers
{
    /// <summary>--against.</summary>
    public static readonly Option<string?> Against = PsOptions.Create<string?>("--against", null, "bench logreg: liblinear compares the solvers' objective, accuracy, AUC and time with Debian's liblinear-tools on the same split");

    /// <summary>One row of the table.</summary>
    private sealed record Row(string Solver, double Objective, double Accuracy, double Auc, double Seconds, double WallSeconds, string Note);

    /// <summary>Runs the comparison; returns the exit code.</summary>
    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        string data = Path.GetFullPath(p.GetValue(LogRegAppDefinition.Data) ?? throw new ArgumentException("bench logreg --against liblinear needs --data FILE and --test FILE"));
        string test = Path.GetFullPath(p.GetValue(LogRegAppDefinition.Test) ?? throw new ArgumentException("bench logreg --against liblinear needs --test FILE"));
        double l1 = p.GetValue(LogRegAppDefinition.L1) ?? 0;
        double l2 = p.GetValue(LogRegAppDefinition.L2) ?? (l1 > 0 ? 0 : 1);
        int servers = p.GetValue(LocalCluster.Servers), workers = p.GetValue(LocalCluster.Workers);
        int repeat = p.GetResult(BenchTraining.Repeat) is { Implicit: false } ? p.GetValue(BenchTraining.Repeat) : 1;
        string file = BenchTraining.RepeatFile(data, repeat);
        string dir = Directory.CreateTempSubdirectory("pserver-bench-solvers-").FullName;
        var rows = new List<Row>();
        double? optimum = null;
        try
        {
            if (LibLinear.Unavailable is { } why)
            {
                Console.Error.WriteLine($"bench logreg: {why}; comparing our solvers only");
            }
            else if (l1 > 0 && l2 > 0)
            {
                Console.Error.WriteLine("bench logreg: liblinear has no L1 + L2 logistic regression; comparing our solvers only");
            }
            else
            {
                string solver = l1 > 0 ? "-s 6" : "-s 0";
                double c = 1 / (l1 > 0 ? l1 : l2);
                foreach (var (eps, label) in new[] { ((double?)1e-4, "optimum"), (null, "default -e") })
                {
                    Console.Error.WriteLine($"bench logreg: liblinear {solver} -c {c} ({label})...");
                    string model = Path.Combine(dir, $"liblinear{rows.Count}.model");
                    double seconds = LibLinear.Train(solver, c, eps, file, model);
                    var ours = LibLinear.ToModelFile(model);
                    var (metrics, _, _) = Predictor.Score(ours, test);
                    double objective = Predictor.Objective(ours, file, l1, l2);
                    optimum ??= objective;
                    rows.Add(new Row($"liblinear {solver} -c {c.ToString(CultureInfo.InvariantCulture)}{(eps is { } e ? $" -e {e.ToString(CultureInfo.InvariantCulture)}" : "")}", objective, metrics.Accuracy, metrics.Auc, seconds, seconds, label));
                }
            }
            string[] regularisation = ["--l1", l1.ToString("R", CultureInfo.InvariantCulture), "--l2", l2.ToString("R", CultureInfo.InvariantCulture)];
            var ourRuns = new (string Name, string[] Arguments)[]
            {
                ("bpg", ["--solver", "bpg", .. regularisation]),
                ("bpg --delay 4", ["--solver", "bpg", "--delay", "4", .. regularisation]),
                ("owlqn", ["--solver", "owlqn", .. regularisation]),
                ("online ftrl (10 epochs)", ["--solver", "online"]),
            };
            foreach (var (name, arguments) in ourRuns)
            {
                Console.Error.WriteLine($"bench logreg: {name} on {servers} servers x {workers} workers...");
                string model = Path.Combine(dir, $"ours{rows.Count}.model");
                var wall = Stopwatch.StartNew();
                var job = BenchTraining.QuietJob(servers, workers, ["--json", "--app", "logreg", "--data", file, "--test", test, "--model-out", model, .. arguments]);
                var run = await LocalJob.RunAsync(job, ct);
                if (run.Failure is not null)
                {
                    throw new PsException(PsErrorCode.Internal, $"{name} failed: {run.Failure}");
                }
                double wallSeconds = wall.Elapsed.TotalSeconds;
                var lines = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
                var final = lines.Last(e => !e.TryGetProperty("epoch", out _) && !e.TryGetProperty("iteration", out _));
                double seconds = final.TryGetProperty("seconds", out var s)
                    ? s.GetDouble()
                    : lines.Where(e => e.TryGetProperty("epoch", out _)).Sum(e => e.GetProperty("seconds").GetDouble());
                double objective = Predictor.Objective(ModelFile.Read(model), file, l1, l2);
                string note = final.TryGetProperty("iterations", out var iterations) ? $"{iterations.GetInt32()} iterations" : "its own regularisation (--l1 0.5 --l2 1 per step)";
                rows.Add(new Row(name, objective, final.GetProperty("test_accuracy").GetDouble(), final.GetProperty("test_auc").GetDouble(), seconds, wallSeconds, note));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            if (file != data)
            {
                File.Delete(file);
            }
        }
        Print(rows, optimum, p.GetValue(PsOptions.Json), data, l1, l2);
        return ExitCodes.Ok;
    }

    private static void Print(List<Row> rows, double? optimum, bool json, string data, double l1, double l2)
    {
        if (!json)
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(data)}: objective = sum of log losses + {l1} |w|_1 + {l2}/2 |w|^2 on the training rows; accuracy and AUC on the test rows"));
            Console.Out.WriteLine($"{"solver",-32} {"objective",14} {"above opt.",10} {"accuracy",9} {"AUC",7} {"seconds",8} {"wall s",7}  note");
        }
        foreach (var row in rows)
        {
            double? above = optimum is { } best ? (row.Objective - best) / best : null;
            if (json)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["bench"] = "logreg_solvers",
                    ["solver"] = row.Solver,
                    ["objective"] = Math.Round(row.Objective, 4),
                    ["above_optimum"] = above is { } a ? Math.Round(a, 7) : null,
                    ["test_accuracy"] = Math.Round(row.Accuracy, 6),
                    ["test_auc"] = Math.Round(row.Auc, 6),
                    ["seconds"] = Math.Round(row.Seconds, 3),
                    ["wall_seconds"] = Math.Round(row.WallSeconds, 3),
                    ["note"] = row.Note,
                }));
            }
            else
            {
                string aboveText = above is { } a ? a.ToString("P3", CultureInfo.InvariantCulture) : "-";
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{row.Solver,-32} {row.Objective,14:0.000} {aboveText,10} {row.Accuracy * 100,8:0.00}% {row.Auc,7:0.0000} {row.Seconds,8:0.00} {row.WallSeconds,7:0.0}  {row.Note}"));
            }
        }
    }
}

/// <summary>Debian's liblinear-tools (`liblinear-train`), the reference solver of the comparison.</summary>
public static class LibLinear
{
    /// <summary>Where Debian installs it.</summary>
    public const string TrainPath = "/usr/bin/liblinear-train";

    /// <summary>Why liblinear cannot run here, or null.</summary>
    public static string? Unavailable => File.Exists(TrainPath) ? null : $"liblinear is not installed ({TrainPath}; apt-get install liblinear-tools)";

    /// <summary>
    /// Trains with a regularised bias feature (-B 1, as our models have) and returns the seconds it took, reading
    /// the file included. <paramref name="epsilon"/> null keeps liblinear's default stopping tolerance.
    /// </summary>
    public static double Train(string solver, double c, double? epsilon, string data, string model)
    {
        var info = new ProcessStartInfo(TrainPath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var arguments = solver.Split(' ').Concat(["-c", c.ToString("R", CultureInfo.InvariantCulture), "-B", "1", "-q"]);
        if (epsilon is { } e)
        {
            arguments = arguments.Concat(["-e", e.ToString("R", CultureInfo.InvariantCulture)]);
        }
        foreach (string a in arguments.Concat([data, model]))
        {
            info.ArgumentList.Add(a);
        }
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {TrainPath}");
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(600_000))
        {
            process.Kill();
            throw new TimeoutException($"{TrainPath} ran longer than 10 minutes on {data}");
        }
        double seconds = watch.Elapsed.TotalSeconds;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{TrainPath} failed (exit {process.ExitCode}): {stderr.Result}");
        }
        return seconds;
    }

    /// <summary>
    /// A liblinear model (-B 1) as our model file's weights: feature i's weight under key i, the bias under
    /// <see cref="Apps.LogReg.Data.LibSvmReader.BiasKey"/>, signs flipped when liblinear's first label is not the positive one.
    /// </summary>
    public static ModelFile ToModelFile(string path)
    {
        var lines = File.ReadAllLines(path);
        string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name + " ", StringComparison.Ordinal))?[(name.Length + 1)..]
            ?? throw new FormatException($"liblinear model {path} has no '{name}' line");
        double firstLabel = double.Parse(Field("label").Split(' ')[0], CultureInfo.InvariantCulture);
        int features = int.Parse(Field("nr_feature"), CultureInfo.InvariantCulture);
        double bias = double.Parse(Field("bias"), CultureInfo.InvariantCulture);
        var w = lines.SkipWhile(l => l != "w").Skip(1).Where(l => l.Trim().Length > 0).Select(l => double.Parse(l.Trim(), CultureInfo.InvariantCulture)).ToArray();
        double sign = firstLabel > 0 ? 1 : -1;
        var weights = new Dictionary<ulong, float>();
        for (int i = 0; i < features; i++)
        {
            if (w[i] != 0)
            {
                weights[(ulong)(i + 1)] = (float)(sign * w[i]);
            }
        }
        if (bias > 0)
        {
            weights[Apps.LogReg.Data.LibSvmReader.BiasKey] = (float)(sign * w[features] * bias);
        }
        return new ModelFile { HashBits = 0, Weights = weights };
    }
}
