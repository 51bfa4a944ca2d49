using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Hosting;

[assembly: PsApp(typeof(LogRegAppDefinition))]

namespace ParameterServer.Apps.LogReg;

/// <summary>`--app logreg` and `pserver train logreg`: its options, its factory, and the training job on a local cluster.</summary>
public sealed class LogRegAppDefinition : IPsAppDefinition, IPsTrainable
{
    /// <summary>--data.</summary>
    public static readonly Option<string?> Data = AppOptions.Data;

    /// <summary>--test.</summary>
    public static readonly Option<string?> Test = AppOptions.Test;

    /// <summary>--epochs.</summary>
    public static readonly Option<int> Epochs = AppOptions.Epochs;

    /// <summary>--batch.</summary>
    public static readonly Option<int?> Batch = AppOptions.Batch;

    /// <summary>--optimizer.</summary>
    public static readonly Option<string?> Optimizer = AppOptions.Optimizer;

    /// <summary>--lr.</summary>
    public static readonly Option<double?> LearningRate = AppOptions.LearningRate;

    /// <summary>--l1.</summary>
    public static readonly Option<double?> L1 = PsOptions.Create<double?>("--l1", null, "logreg: L1 regularisation (ftrl default 0.5; bpg, owlqn default 0, the objective's l1 |w|_1)");

    /// <summary>--l2.</summary>
    public static readonly Option<double?> L2 = PsOptions.Create<double?>("--l2", null, "logreg: L2 regularisation (ftrl, sgd default 1; bpg, owlqn default 1, the objective's l2/2 |w|^2: liblinear -s 0 with C = 1/l2)");

    /// <summary>--solver.</summary>
    public static readonly Option<string?> Solver = PsOptions.Create<string?>("--solver", null, "logreg: bpg (the default: the paper's delayed block proximal gradient, trains to the regularised optimum and stops), owlqn (L-BFGS/OWL-QN with its vectors on the servers, the same optimum; feature ids up to 2^25) or online (minibatch epochs, the servers run --optimizer; the default when --epochs, --batch, --optimizer, --lr, --filter, --pull-filter or --validation-fraction is given; for data larger than the workers' memory)");

    /// <summary>--validation-fraction.</summary>
    public static readonly Option<double> ValidationFraction = PsOptions.Create("--validation-fraction", 0.1, "logreg online with --epochs auto: the fraction of training rows held out; training stops when their log loss stops improving");

    /// <summary>--blocks.</summary>
    public static readonly Option<int> Blocks = PsOptions.Create("--blocks", 0, "logreg bpg: feature blocks per iteration (0: twice a mean row's features, 32 to 1024)");

    /// <summary>--delay.</summary>
    public static readonly Option<int> Delay = PsOptions.Create("--delay", 0, "logreg bpg: blocks a worker may start before the servers answered an earlier one (the paper's tau; 0: sequential, the objective never rises)");

    /// <summary>--tol.</summary>
    public static readonly Option<double> Tolerance = PsOptions.Create("--tol", 1e-6, "logreg bpg, owlqn: stop when an iteration lowers the objective by less than this fraction");

    /// <summary>--max-iterations.</summary>
    public static readonly Option<int> MaxIterations = PsOptions.Create("--max-iterations", 500, "logreg bpg, owlqn: stop after this many iterations even if not converged");

    /// <summary>--hash-bits.</summary>
    public static readonly Option<int> HashBits = PsOptions.Create("--hash-bits", 0, "logreg: hash feature ids into 2^BITS keys (0: use ids as keys)");

    /// <summary>--model-out.</summary>
    public static readonly Option<string?> ModelOut = AppOptions.ModelOut;

    /// <summary>--skip-bad-lines.</summary>
    public static readonly Option<bool> SkipBadLines = PsOptions.Create("--skip-bad-lines", false, "logreg: count and skip malformed lines instead of stopping");

    /// <summary>--key-cache.</summary>
    public static readonly Option<bool> KeyCache = PsOptions.Create("--key-cache", false, "logreg: key caching: a key list sent to a server before goes as a 16-byte signature (lossless)");

    /// <summary>--compress.</summary>
    public static readonly Option<string> Compress = AppOptions.Compress;

    /// <summary>--filter.</summary>
    public static readonly Option<string> Filter = PsOptions.Create("--filter", "none", "logreg: push filter: none, kkt (skip gradients that cannot move a zero weight), sigmod:THRESHOLD, random:P");

    /// <summary>--pull-filter.</summary>
    public static readonly Option<string> PullFilter = PsOptions.Create("--pull-filter", "none", "logreg: pull filter: none, sigmod:THRESHOLD (servers send a weight only when it moved by more than THRESHOLD since they last sent it to this worker)");

    /// <summary>--synthetic (train only).</summary>
    private static readonly Option<bool> Synthetic = PsOptions.Create("--synthetic", false, "Generate a sample with known true weights (no --data needed) and report how close training got");
    /// <summary>--synthetic-rows (train only).</summary>
    private static readonly Option<long> SyntheticRows = PsOptions.Create("--synthetic-rows", 100_000L, "Rows of the generated training sample");

    /// <inheritdoc/>
    public string Name => "logreg";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } = [Data, Test, Epochs, Batch, Optimizer, LearningRate, L1, L2, Solver, Blocks, Delay, Tolerance, MaxIterations, ValidationFraction, HashBits, ModelOut, SkipBadLines, KeyCache, Compress, Filter, PullFilter];

    /// <inheritdoc/>
    public string TrainDescription => "Train L1/L2-regularised logistic regression on a local cluster of real processes (to the optimum by default)";

    /// <inheritdoc/>
    public IEnumerable<Option> TrainOptions => [Synthetic, SyntheticRows];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new LogRegApp(LogRegOptionsFrom(p));

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p)
    {
        var args = new List<string>();
        string solver = SolverOf(p);
        bool online = solver == "online"; // the online-only options go only with it: on a worker they would choose it
        AppRegistry.AddArgument(args, Data.Name, FullPath(p.GetValue(Data)));
        AppRegistry.AddArgument(args, Test.Name, FullPath(p.GetValue(Test)));
        if (online)
        {
            AppRegistry.AddArgument(args, Epochs.Name, p.GetValue(Epochs) == AppOptions.AutoEpochs ? "auto" : p.GetValue(Epochs));
            AppRegistry.AddArgument(args, Batch.Name, p.GetValue(Batch));
            AppRegistry.AddArgument(args, Optimizer.Name, p.GetValue(Optimizer));
            AppRegistry.AddArgument(args, LearningRate.Name, p.GetValue(LearningRate));
            AppRegistry.AddArgument(args, Filter.Name, p.GetValue(Filter));
            AppRegistry.AddArgument(args, PullFilter.Name, p.GetValue(PullFilter));
            AppRegistry.AddArgument(args, ValidationFraction.Name, p.GetValue(ValidationFraction));
        }
        AppRegistry.AddArgument(args, L1.Name, p.GetValue(L1));
        AppRegistry.AddArgument(args, L2.Name, p.GetValue(L2));
        AppRegistry.AddArgument(args, Solver.Name, solver);
        AppRegistry.AddArgument(args, Blocks.Name, p.GetValue(Blocks));
        AppRegistry.AddArgument(args, Delay.Name, p.GetValue(Delay));
        AppRegistry.AddArgument(args, Tolerance.Name, p.GetValue(Tolerance));
        AppRegistry.AddArgument(args, MaxIterations.Name, p.GetValue(MaxIterations));
        AppRegistry.AddArgument(args, HashBits.Name, p.GetValue(HashBits));
        AppRegistry.AddArgument(args, ModelOut.Name, FullPath(p.GetValue(ModelOut)));
        if (p.GetValue(SkipBadLines))
        {
            args.Add(SkipBadLines.Name);
        }
        if (p.GetValue(KeyCache))
        {
            args.Add(KeyCache.Name);
        }
        AppRegistry.AddArgument(args, Compress.Name, p.GetValue(Compress));
        return args;
    }

    private static string? FullPath(string? path) => path is null ? null : Path.GetFullPath(path);

    /// <summary>Options only the online solver has: giving one without --solver means --solver online.</summary>
    private static readonly Option[] OnlineOnly = [Epochs, Batch, Optimizer, LearningRate, Filter, PullFilter, ValidationFraction];

    /// <summary>--solver as given; else online if an online-only option was given, else bpg.</summary>
    private static string SolverOf(ParseResult p)
    {
        var given = OnlineOnly.Where(o => p.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
        if (p.GetValue(Solver) is { } named)
        {
            string solver = named.Trim().ToLowerInvariant();
            if (solver != "online" && given.Count > 0)
            {
                throw new ArgumentException($"{string.Join(", ", given)} {(given.Count == 1 ? "applies" : "apply")} to --solver online, not {solver} ({solver} runs until converged: --tol, --max-iterations)");
            }
            return solver;
        }
        return given.Count > 0 ? "online" : "bpg";
    }

    /// <summary>The app's options from the parsed command line, validated.</summary>
    public static LogRegOptions LogRegOptionsFrom(ParseResult p)
    {
        string solver = SolverOf(p);
        var options = new LogRegOptions
        {
            Solver = solver,
            Blocks = p.GetValue(Blocks),
            Delay = p.GetValue(Delay),
            Tolerance = p.GetValue(Tolerance),
            MaxIterations = p.GetValue(MaxIterations),
            Data = p.GetValue(Data) ?? throw new ArgumentException("logreg needs --data FILE (LIBSVM text, gzip accepted)"),
            Test = p.GetValue(Test),
            Epochs = p.GetValue(Epochs),
            ValidationFraction = p.GetValue(ValidationFraction),
            Batch = p.GetValue(Batch) ?? 100,
            Optimizer = (p.GetValue(Optimizer) ?? "ftrl").ToLowerInvariant(),
            LearningRate = p.GetValue(LearningRate),
            L1 = p.GetValue(L1),
            L2 = p.GetValue(L2) ?? 1,
            Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!),
            HashBits = p.GetValue(HashBits),
            ModelOut = p.GetValue(ModelOut),
            SkipBadLines = p.GetValue(SkipBadLines),
            KeyCaching = p.GetValue(KeyCache),
            Compression = p.GetValue(Compress)!,
            Filter = p.GetValue(Filter)!,
            PullFilter = p.GetValue(PullFilter)!,
        };
        options.Validate();
        return options;
    }

    /// <inheritdoc/>
    public async Task<int> TrainAsync(ParseResult p, CancellationToken ct)
    {
        bool json = p.GetValue(PsOptions.Json);
        string? sampleDir = null;
        var args = new List<string>();
        string? modelOut = p.GetValue(ModelOut);
        SparseDataSpec? synthetic = null;
        if (p.GetValue(Synthetic))
        {
            if (p.GetValue(Data) is not null)
            {
                throw new ArgumentException("use either --synthetic or --data, not both");
            }
            sampleDir = Directory.CreateTempSubdirectory("pserver-synthetic-").FullName;
            synthetic = new SparseDataSpec { Rows = p.GetValue(SyntheticRows), Features = 1_000, Zipf = 1.1, FeaturesPerRow = 20, Seed = 7 };
            string train = Path.Combine(sampleDir, "train.libsvm");
            string test = Path.Combine(sampleDir, "test.libsvm");
            await Console.Error.WriteLineAsync($"train: generating {synthetic.Rows:N0} training and {synthetic.Rows / 4:N0} test rows ({synthetic.Features:N0} features, Zipf {synthetic.Zipf}) in {sampleDir}");
            SparseGenerator.Write(synthetic, train);
            SparseGenerator.Write(synthetic with { Rows = synthetic.Rows / 4 }, test, rowSeed: synthetic.Seed + 1);
            modelOut ??= Path.Combine(sampleDir, "model.txt");
            args.AddRange(["--data", train, "--test", test]);
        }
        // Check the options once here, not in every worker.
        var parsed = p.GetValue(Synthetic) ? null : LogRegOptionsFrom(p);
        if (parsed is not null)
        {
            RequireFile(parsed.Data, "--data");
            if (parsed.Test is not null)
            {
                RequireFile(parsed.Test, "--test");
            }
        }
        args.AddRange(["--app", "logreg"]);
        var forwarded = AppRegistry.Forward(p, this);
        for (int i = 0; i < forwarded.Count; i++)
        {
            // --app logreg is ours; --data/--test come from the sample when synthetic; --model-out may be ours.
            if (forwarded[i] is "--app" || (synthetic is not null && forwarded[i] is "--data" or "--test") || forwarded[i] == "--model-out")
            {
                i++;
                continue;
            }
            args.Add(forwarded[i]);
        }
        if (modelOut is not null)
        {
            args.AddRange(["--model-out", Path.GetFullPath(modelOut)]);
        }
        int exitCode = await LocalCluster.TrainAsync(p, args, "train", ct);
        if (exitCode != ExitCodes.Ok)
        {
            return exitCode;
        }
        if (synthetic is not null && sampleDir is not null)
        {
            ReportSyntheticFit(sampleDir, modelOut!, json);
        }
        return ExitCodes.Ok;
    }

    private static void RequireFile(string path, string option)
    {
        if (!File.Exists(path))
        {
            throw new ArgumentException($"{option} '{path}' does not exist");
        }
        if (new FileInfo(path).Length == 0)
        {
            throw new ArgumentException($"{option} '{path}' is empty");
        }
    }

    /// <summary>How close the trained model came to the weights that generated the data.</summary>
    private static void ReportSyntheticFit(string dir, string modelPath, bool json)
    {
        var truth = ModelFile.Read(Path.Combine(dir, "train.libsvm.weights"));
        var trained = ModelFile.Read(modelPath);
        var (trueMetrics, _, _) = Predictor.Score(truth, Path.Combine(dir, "test.libsvm"));
        var (trainedMetrics, _, _) = Predictor.Score(trained, Path.Combine(dir, "test.libsvm"));
        double cosine = Predictor.Cosine(truth.Weights, trained.Weights);
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["synthetic"] = true,
                ["true_model_accuracy"] = Math.Round(trueMetrics.Accuracy, 6),
                ["true_model_auc"] = Math.Round(trueMetrics.Auc, 6),
                ["trained_accuracy"] = Math.Round(trainedMetrics.Accuracy, 6),
                ["trained_auc"] = Math.Round(trainedMetrics.Auc, 6),
                ["weight_cosine"] = Math.Round(cosine, 6),
            }));
            return;
        }
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"synthetic: the true weights reach accuracy {trueMetrics.Accuracy * 100:0.00}%, AUC {trueMetrics.Auc:0.0000} on the test rows; the trained model {trainedMetrics.Accuracy * 100:0.00}%, AUC {trainedMetrics.Auc:0.0000} (cosine similarity of the weights {cosine:0.000})"));
    }
}
