using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.Data;
using ParameterServer.Apps.LogisticRegression;

namespace ParameterServer.Cli;

/// <summary>Training benchmarks: `pserver bench logreg` (throughput vs a single-process baseline) and `pserver bench consistency` (the paper's Fig. 13).</summary>
internal static class BenchTraining
{
    private static readonly Option<int> Repeat = Options.Create("--repeat", 30, "Concatenate the data this many times, so an epoch is long enough to be steady");

    public static Command LogReg()
    {
        var command = new Command("logreg", "Training throughput of one worker and one server against the same loop with the weights in local memory")
        {
            AppOptions.Data, AppOptions.Epochs, AppOptions.Batch, AppOptions.Optimizer, AppOptions.Consistency, Repeat, Options.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            string data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("bench logreg needs --data FILE (e.g. ../shared/data/a9a/a9a)");
            int epochs = Math.Max(2, p.GetResult(AppOptions.Epochs) is { Implicit: false } ? p.GetValue(AppOptions.Epochs) : 3);
            int batch = p.GetResult(AppOptions.Batch) is { Implicit: false } ? p.GetValue(AppOptions.Batch) : 1000;
            var options = new LogRegOptions { Data = data, Batch = batch, Epochs = epochs, Optimizer = p.GetValue(AppOptions.Optimizer)!, Consistency = Consistency.Parse(p.GetValue(AppOptions.Consistency)!) };
            options.Validate();
            string file = RepeatFile(data, p.GetValue(Repeat));
            try
            {
                // The baseline: the same trainer and the same store and handler the servers use, in this process.
                var rates = LogRegBaseline.Measure(options, file, ct);
                double baseline = SteadyState(rates);

                var job = new LocalJobSpec
                {
                    Servers = 1,
                    Workers = 1,
                    LogLevel = "warning",
                    ResultsOnly = true,
                    ShowProgress = false,
                    WorkerArguments = ["--json", "--app", "logreg", "--data", file, "--epochs", LocalJob.Inv(epochs), "--batch", LocalJob.Inv(batch),
                        "--optimizer", options.Optimizer, "--consistency", options.Consistency.ToString()],
                };
                var quiet = Console.Out;
                Console.SetOut(TextWriter.Null);
                LocalJobResult run;
                try
                {
                    run = await LocalJob.RunAsync(job, ct);
                }
                finally
                {
                    Console.SetOut(quiet);
                }
                if (run.Failure is not null)
                {
                    throw new PsException(PsErrorCode.Internal, $"the 1x1 cluster failed: {run.Failure}");
                }
                var clusterRates = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement)
                    .Where(e => e.TryGetProperty("epoch", out _)).Select(e => e.GetProperty("examples_per_sec").GetDouble()).ToList();
                double cluster = SteadyState(clusterRates);
                long rows = LibSvmReader.CountRows(file, 0, 1, new LibSvmOptions());
                if (p.GetValue(Options.Json))
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["bench"] = "logreg",
                        ["rows_per_epoch"] = rows,
                        ["epochs"] = epochs,
                        ["batch"] = batch,
                        ["baseline_examples_per_sec"] = Math.Round(baseline),
                        ["cluster_examples_per_sec"] = Math.Round(cluster),
                        ["ratio"] = Math.Round(cluster / baseline, 3),
                    }));
                }
                else
                {
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"logreg on {rows:N0} rows x {epochs} epochs, batch {batch}, {options.Optimizer}, {options.Consistency}:\n  single process (weights in local memory): {baseline,12:N0} examples/s\n  1 server x 1 worker (TCP, two processes): {cluster,12:N0} examples/s  ({cluster / baseline:0.00} x the baseline)"));
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
        }));
        return command;
    }

    /// <summary>Median of the epochs after the first (which pays for JIT and cold caches).</summary>
    private static double SteadyState(List<double> rates)
    {
        var steady = rates.Skip(1).Order().ToList();
        return steady.Count == 0 ? double.NaN : steady[steady.Count / 2];
    }

    private static string RepeatFile(string data, int repeat)
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
