using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.LogReg.Data;

using ParameterServer.Apps.LogReg;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench traffic`: the paper's Fig. 11. Logistic regression on a local cluster with no traffic reduction, then
/// key caching, then value compression, then the KKT filter added; bytes sent by workers and by servers, and accuracy.
/// </summary>
public static class BenchTraffic
{
    /// <summary>--features.</summary>
    public static readonly Option<int> Features = PsOptions.Create("--features", 1_000_000, "Synthetic data (without --data): features");
    /// <summary>--rows.</summary>
    public static readonly Option<long> Rows = PsOptions.Create("--rows", 200_000L, "Synthetic data (without --data): training rows");
    /// <summary>--compress.</summary>
    public static readonly Option<string> Compress = PsOptions.Create("--compress", "zero+fp16", "The value encoding of the compression step");
    /// <summary>--pull-filter.</summary>
    public static readonly Option<string> PullFilter = PsOptions.Create("--pull-filter", "sigmod:0.01", "The pull filter of the last step");
    /// <summary>--steps.</summary>
    public static readonly Option<string> Steps = PsOptions.Create("--steps", "none,cache,compress,kkt,pull", "The configurations to run, each adding to the one before: none, cache, compress, kkt, pull");

    private sealed record Step(string Name, string[] Arguments);

    /// <summary>`pserver bench traffic`: bytes sent with each reduction step added; returns the exit code.</summary>
    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        string? data = p.GetValue(LogRegAppDefinition.Data);
        string? test = p.GetValue(LogRegAppDefinition.Test);
        string? sampleDir = null;
        int epochs = p.GetResult(LogRegAppDefinition.Epochs) is { Implicit: false } ? p.GetValue(LogRegAppDefinition.Epochs) : 3;
        bool json = p.GetValue(PsOptions.Json);
        LocalCluster.CheckReplication(p, p.GetValue(LocalCluster.Servers));
        try
        {
            if (data is null)
            {
                sampleDir = Directory.CreateTempSubdirectory("pserver-traffic-").FullName;
                var spec = new SparseDataSpec { Rows = p.GetValue(Rows), Features = p.GetValue(Features), Zipf = 1.1, FeaturesPerRow = 20, Seed = 7 };
                data = Path.Combine(sampleDir, "train.libsvm");
                test = Path.Combine(sampleDir, "test.libsvm");
                await Console.Error.WriteLineAsync($"bench traffic: generating {spec.Rows:N0} training rows with {spec.Features:N0} features (Zipf {spec.Zipf}) in {sampleDir}");
                SparseGenerator.Write(spec, data);
                SparseGenerator.Write(spec with { Rows = spec.Rows / 4 }, test, rowSeed: spec.Seed + 1);
            }
            string compress = p.GetValue(Compress)!;
            var all = new List<Step>
            {
                new("none", []),
                new("cache", ["--key-cache"]),
                new("compress", ["--key-cache", "--compress", compress]),
                new("kkt", ["--key-cache", "--compress", compress, "--filter", "kkt"]),
                new("pull", ["--key-cache", "--compress", compress, "--filter", "kkt", "--pull-filter", p.GetValue(PullFilter)!]),
            };
            var wanted = p.GetValue(Steps)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var results = new List<Dictionary<string, object?>>();
            foreach (var step in all.Where(s => wanted.Contains(s.Name)))
            {
                var job = new LocalJobSpec
                {
                    Servers = p.GetValue(LocalCluster.Servers),
                    Workers = p.GetValue(LocalCluster.Workers),
                    LogLevel = "warning",
                    ResultsOnly = true,
                    SchedulerArguments = ["--replication", LocalJob.Inv(p.GetValue(PsOptions.Replication))],
                    ShowProgress = false,
                    Echo = false,
                    WorkerArguments = ["--json", "--app", "logreg", "--data", Path.GetFullPath(data), .. test is null ? Array.Empty<string>() : ["--test", Path.GetFullPath(test)],
                        "--epochs", LocalJob.Inv(epochs), "--batch", LocalJob.Inv(p.GetValue(LogRegAppDefinition.Batch) ?? 100), "--l1", (p.GetValue(LogRegAppDefinition.L1) ?? 0.5).ToString(CultureInfo.InvariantCulture), .. step.Arguments],
                };
                var run = await LocalJob.RunAsync(job, ct);
                if (run.Failure is not null)
                {
                    throw new PsException(PsErrorCode.Internal, $"the '{step.Name}' run failed: {run.Failure}");
                }
                var lines = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("epoch", out _)).ToList();
                var first = lines[0].GetProperty("traffic");
                var last = lines[^1].GetProperty("traffic");
                long Get(JsonElement t, string name) => t.GetProperty(name).GetInt64();
                var result = new Dictionary<string, object?>
                {
                    ["step"] = step.Name,
                    ["arguments"] = string.Join(' ', step.Arguments),
                    ["workers_sent"] = Get(last, "workers_sent"),
                    ["servers_sent"] = Get(last, "servers_sent"),
                    ["workers_sent_after_epoch1"] = Get(last, "workers_sent") - Get(first, "workers_sent"),
                    ["servers_sent_after_epoch1"] = Get(last, "servers_sent") - Get(first, "servers_sent"),
                    ["total_sent"] = Get(last, "workers_sent") + Get(last, "servers_sent"),
                    ["test_accuracy"] = lines[^1].GetProperty("test_accuracy").ValueKind == JsonValueKind.Number ? lines[^1].GetProperty("test_accuracy").GetDouble() : null,
                    ["bytes_sent_by_type"] = last.GetProperty("by_type").EnumerateObject()
                        .Where(t => t.Value.GetProperty("bytes_sent").GetInt64() > 0)
                        .ToDictionary(t => t.Name, t => t.Value.GetProperty("bytes_sent").GetInt64()),
                    ["examples_per_sec"] = lines.Skip(1).Select(l => l.GetProperty("examples_per_sec").GetDouble()).DefaultIfEmpty(lines[0].GetProperty("examples_per_sec").GetDouble()).Average(),
                };
                results.Add(result);
                await Console.Error.WriteLineAsync($"bench traffic: {step.Name} done: workers sent {Mb(result["workers_sent"])}, servers sent {Mb(result["servers_sent"])}, accuracy {result["test_accuracy"]}");
            }
            var baseline = results.FirstOrDefault(r => (string)r["step"]! == "none");
            foreach (var r in results)
            {
                if (baseline is not null)
                {
                    r["workers_saved_after_epoch1"] = Math.Round(1 - ((double)(long)r["workers_sent_after_epoch1"]! / (long)baseline["workers_sent_after_epoch1"]!), 4);
                    r["total_reduction"] = Math.Round((double)(long)baseline["total_sent"]! / (long)r["total_sent"]!, 2);
                    r["accuracy_change_points"] = r["test_accuracy"] is double a && baseline["test_accuracy"] is double b ? Math.Round((a - b) * 100, 3) : null;
                }
                if (json)
                {
                    Console.Out.WriteLine(JsonSerializer.Serialize(r));
                }
            }
            if (!json)
            {
                Console.Out.WriteLine($"{"step",-9} {"workers sent",13} {"servers sent",13} {"workers, epochs 2+",19} {"saved",6} {"total /",8} {"accuracy",9} {"examples/s",11}");
                foreach (var r in results)
                {
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{r["step"],-9} {Mb(r["workers_sent"]),13} {Mb(r["servers_sent"]),13} {Mb(r["workers_sent_after_epoch1"]),19} {r.GetValueOrDefault("workers_saved_after_epoch1") as double? ?? 0,6:P0} {r.GetValueOrDefault("total_reduction") as double? ?? 1,7:0.00}x {r["test_accuracy"] as double? ?? double.NaN,9:0.0000} {(double)r["examples_per_sec"]!,11:N0}"));
                }
            }
            return ExitCodes.Ok;
        }
        finally
        {
            if (sampleDir is not null)
            {
                Directory.Delete(sampleDir, recursive: true);
            }
        }
    }

    private static string Mb(object? bytes) => string.Create(CultureInfo.InvariantCulture, $"{(long)bytes! / 1e6:0.00} MB");
}
