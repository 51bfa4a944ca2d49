using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.Mnist;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench mnist`: Downpour SGD on one server and one worker (two processes, TCP) against the same training
/// loop in one process, measured in the same run; and each step's time split into compute, fetch and push, once per
/// value encoding, which is the table that shows where communication starts to matter (a large MLP).
/// </summary>
public static class BenchMnist
{
    /// <summary>--codecs.</summary>
    public static readonly Option<string> Codecs = PsOptions.Create("--codecs", "none", "Value encodings to run the cluster with, comma-separated (e.g. none,fp16): one row each");

    /// <summary>Returns the exit code.</summary>
    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        string data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("bench mnist needs --data DIR (e.g. ../shared/data/mnist)");
        if (!Directory.Exists(data))
        {
            throw new ArgumentException($"--data '{data}' is not a directory of MNIST idx files");
        }
        int epochs = p.GetResult(AppOptions.Epochs) is { Implicit: false } ? p.GetValue(AppOptions.Epochs) : 3;
        var options = new MnistOptions
        {
            Data = Path.GetFullPath(data),
            Model = p.GetValue(MnistAppDefinition.Model) ?? "lenet5",
            Epochs = Math.Max(2, epochs),
            Batch = p.GetValue(AppOptions.Batch) ?? 64,
            TrainLimit = p.GetValue(MnistAppDefinition.TrainLimit),
        };
        options.Validate();
        var codecs = p.GetValue(Codecs)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        bool json = p.GetValue(PsOptions.Json);

        Console.Error.WriteLine($"bench mnist: {options.Model}, batch {options.Batch}, {options.Epochs} epochs in one process...");
        double baseline = BenchTraining.SteadyState(MnistBaseline.Measure(options, ct));
        if (json)
        {
            Write(new() { ["bench"] = "mnist", ["run"] = "single-process", ["model"] = options.Model, ["batch"] = options.Batch, ["images_per_sec"] = Math.Round(baseline) });
        }
        else
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{options.Model}, batch {options.Batch}, median of epochs 2..{options.Epochs}:\n  single process (parameters in local memory): {baseline,10:N0} images/s"));
            Console.Out.WriteLine($"  {"1 server x 1 worker, Downpour",-44} {"images/s",10} {"x base",7} {"step ms",8} {"compute",8} {"fetch",8} {"push",8} {"MB/step",8}");
        }
        foreach (string codec in codecs)
        {
            Console.Error.WriteLine($"bench mnist: the same on 1 server x 1 worker, --compress {codec}...");
            var epochLines = (await BenchTraining.EpochsAsync(BenchTraining.QuietJob(1, 1, ["--json", "--app", "mnist", "--data", options.Data, "--model", options.Model,
                "--epochs", LocalJob.Inv(options.Epochs), "--batch", LocalJob.Inv(options.Batch), "--train-limit", LocalJob.Inv(options.TrainLimit),
                "--test-limit", "1000", "--compress", codec]), $"the 1x1 cluster with --compress {codec}", ct)).Skip(1).ToList();
            // The steady epoch: the median by rate, with its own split of the step.
            var steady = epochLines.OrderBy(e => e.GetProperty("images_per_sec").GetDouble()).ElementAt(epochLines.Count / 2);
            double rate = steady.GetProperty("images_per_sec").GetDouble();
            double stepMs = 1000.0 * options.Batch / rate;
            double fetchMs = stepMs * steady.GetProperty("fetch_wait_fraction").GetDouble();
            double pushMs = stepMs * steady.GetProperty("push_fraction").GetDouble();
            double computeMs = stepMs - fetchMs - pushMs;
            var last = epochLines[^1];
            double steps = (double)options.Epochs * ((options.TrainLimit > 0 ? options.TrainLimit : 60_000) / options.Batch);
            double mbPerStep = last.GetProperty("bytes_sent").GetInt64() / steps / 1e6; // on the wire, both ways
            if (json)
            {
                Write(new()
                {
                    ["bench"] = "mnist",
                    ["run"] = "1x1",
                    ["model"] = options.Model,
                    ["compress"] = codec,
                    ["images_per_sec"] = Math.Round(rate),
                    ["ratio"] = Math.Round(rate / baseline, 3),
                    ["step_ms"] = Math.Round(stepMs, 3),
                    ["compute_ms"] = Math.Round(computeMs, 3),
                    ["fetch_ms"] = Math.Round(fetchMs, 3),
                    ["push_ms"] = Math.Round(pushMs, 3),
                    ["mb_per_step"] = Math.Round(mbPerStep, 3),
                });
            }
            else
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {"  --compress " + codec,-44} {rate,10:N0} {rate / baseline,7:0.00} {stepMs,8:0.00} {computeMs,8:0.00} {fetchMs,8:0.00} {pushMs,8:0.00} {mbPerStep,8:0.00}"));
            }
        }
        return ExitCodes.Ok;
    }

    private static void Write(Dictionary<string, object> line) => Console.Out.WriteLine(JsonSerializer.Serialize(line));
}
