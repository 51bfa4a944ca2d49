using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.Data;
using ParameterServer.Apps.LogisticRegression;

namespace ParameterServer.Cli;

/// <summary>`pserver train logreg`: sparse logistic regression on a local cluster, results on standard output.</summary>
internal static class TrainCommand
{
    private static readonly Option<bool> Synthetic = Options.Create("--synthetic", false, "Generate a sample with known true weights (no --data needed) and report how close training got");
    private static readonly Option<long> SyntheticRows = Options.Create("--synthetic-rows", 100_000L, "Rows of the generated training sample");

    public static Command Create()
    {
        var logreg = new Command("logreg", "Train L1-regularised logistic regression on a local cluster of real processes")
        {
            LocalCluster.Servers, LocalCluster.Workers, Options.Json, Options.RequestTimeoutS, Options.VirtualNodes, Options.Replication, Options.HeartbeatMs, Options.HeartbeatTimeoutMs,
            Synthetic, SyntheticRows, AppOptions.Consistency, Options.KeyCacheMb, Options.PullFilterMb,
        };
        foreach (var option in AppOptions.LogReg)
        {
            logreg.Options.Add(option);
        }
        logreg.SetAction((p, ct) => ExitCodes.Guard(() => RunAsync(p, ct)));
        return new Command("train", "Train a model on a local cluster") { logreg };
    }

    private static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        bool json = p.GetValue(Options.Json);
        string? sampleDir = null;
        var args = new List<string>();
        string? modelOut = p.GetValue(AppOptions.ModelOut);
        SparseDataSpec? synthetic = null;
        if (p.GetValue(Synthetic))
        {
            if (p.GetValue(AppOptions.Data) is not null)
            {
                throw new ArgumentException("use either --synthetic or --data, not both");
            }
            sampleDir = Directory.CreateTempSubdirectory("pserver-synthetic-").FullName;
            synthetic = new SparseDataSpec { Rows = p.GetValue(SyntheticRows), Features = 5_000, Zipf = 1.1, FeaturesPerRow = 20, Seed = 7 };
            string train = Path.Combine(sampleDir, "train.libsvm");
            string test = Path.Combine(sampleDir, "test.libsvm");
            await Console.Error.WriteLineAsync($"train: generating {synthetic.Rows:N0} training and {synthetic.Rows / 4:N0} test rows ({synthetic.Features:N0} features, Zipf {synthetic.Zipf}) in {sampleDir}");
            SparseGenerator.Write(synthetic, train);
            SparseGenerator.Write(synthetic with { Rows = synthetic.Rows / 4 }, test, rowSeed: synthetic.Seed + 1);
            modelOut ??= Path.Combine(sampleDir, "model.txt");
            args.AddRange(["--data", train, "--test", test]);
        }
        // Check the options once here, not in every worker.
        var parsed = p.GetValue(Synthetic) ? null : AppOptions.LogRegOptionsFrom(p);
        if (parsed is not null)
        {
            RequireFile(parsed.Data, "--data");
            if (parsed.Test is not null)
            {
                RequireFile(parsed.Test, "--test");
            }
        }
        args.AddRange(["--app", "logreg"]);
        var forwarded = AppOptions.Forward(p);
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
        string logLevel = p.GetResult(Options.LogLevel) is { Implicit: false } ? p.GetValue(Options.LogLevel)! : "warning";
        var spec = LocalCluster.Spec(p, args, json, resultsOnly: true, logLevel: logLevel);
        var result = await LocalJob.RunAsync(spec, ct);
        if (result.Failure is not null)
        {
            await Console.Error.WriteLineAsync($"train: {result.Failure}");
            return result.ExitCode;
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
