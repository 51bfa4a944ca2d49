using System.CommandLine;
using System.Text.Json;
using ParameterServer.Apps.Yt8m;
using ParameterServer.Hosting;
using ParameterServer.Hosting.Planning;

namespace ParameterServer.Cli;

/// <summary>`pserver plan`: how many servers for how many workers, from the model's size, the links' bandwidth and the compute per step.</summary>
internal static class PlanCommand
{
    private static readonly Option<long> ModelBytes = PsOptions.Create("--model-bytes", 0L, "Bytes of parameters pulled and pushed per step (default: the yt8m --model's size)");
    private static readonly Option<int> Workers = PsOptions.Create("--workers", 4, "Workers of the job");
    private static readonly Option<double> BandwidthGbps = PsOptions.Create("--bandwidth-gbps", 0.0, "Each host's link, Gbit/s one way (default: the data path between two processes of this machine, measured)");
    private static readonly Option<double> StepMs = PsOptions.Create("--step-ms", 0.0, "One worker's compute per step in ms (default: measured on this machine with the yt8m --model and --batch)");
    private static readonly Option<string> Model = PsOptions.Create("--model", "logistic", "yt8m model whose size and step to use: logistic or moe");
    private static readonly Option<int> Batch = PsOptions.Create("--batch", 128, "Examples per worker step");

    public static Command Create()
    {
        var command = new Command("plan", "Recommend a number of servers for a Downpour job: predicted time per step (compute, pull, push) and memory per server for 1, 2, 4 ... servers")
        {
            ModelBytes, Workers, BandwidthGbps, StepMs, Model, Yt8mAppDefinition.Experts, Batch, PsOptions.Replication, PsOptions.MaxMemoryMb, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            int workers = p.GetValue(Workers), batch = p.GetValue(Batch);
            if (workers < 1 || batch < 1)
            {
                throw new ArgumentException($"--workers and --batch must be at least 1, got {workers} and {batch}");
            }
            var sources = new List<string>();
            Nn.Sequential? model = null;
            Nn.Sequential Yt8m() => model ??= Yt8mModels.Create(p.GetValue(Model)!, p.GetValue(Yt8mAppDefinition.Experts), Yt8mModels.Labels, batch);
            if (p.GetValue(ModelBytes) < 0)
            {
                throw new ArgumentException($"--model-bytes must be positive, got {p.GetValue(ModelBytes)}");
            }
            long modelBytes = p.GetValue(ModelBytes) is > 0 and var given ? given : Yt8m().ParameterCount * 4L;
            sources.Add(p.GetValue(ModelBytes) > 0 ? "model size given" : $"yt8m {p.GetValue(Model)}: {Yt8m().ParameterCount:N0} parameters");
            double bytesPerSecond;
            if (p.GetValue(BandwidthGbps) is > 0 and var gbps)
            {
                bytesPerSecond = gbps * 1e9 / 8;
                sources.Add("bandwidth given");
            }
            else
            {
                bytesPerSecond = await DataPath.MeasureAsync(modelBytes, ct);
                sources.Add("bandwidth measured: pulls and pushes between two processes of this machine");
            }
            double computeMs;
            if (p.GetValue(StepMs) is > 0 and var ms)
            {
                computeMs = ms;
                sources.Add("compute given");
            }
            else
            {
                computeMs = Yt8mModels.MeasureStepMs(Yt8m());
                sources.Add($"compute measured: batch {batch} on one core");
            }
            int replication = p.GetValue(PsOptions.Replication);
            var inputs = new PlanInputs
            {
                ModelBytes = modelBytes,
                Workers = workers,
                BytesPerSecond = bytesPerSecond,
                ComputeMs = computeMs,
                Batch = batch,
                Replication = replication > 0 ? replication : 2,
                MaxMemoryBytes = PsOptions.Bytes(p, PsOptions.MaxMemoryMb),
            };
            var counts = new List<int> { 1 };
            while (counts[^1] < Math.Max(2 * workers * inputs.Replication, 4))
            {
                counts.Add(counts[^1] * 2);
            }
            if (p.GetValue(PsOptions.Json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["app"] = "plan",
                    ["model_bytes"] = modelBytes,
                    ["workers"] = workers,
                    ["bandwidth_gbps"] = Math.Round(bytesPerSecond * 8 / 1e9, 3),
                    ["compute_ms"] = Math.Round(computeMs, 2),
                    ["replication"] = inputs.Replication,
                    ["recommended_servers"] = ServerPlan.Recommend(inputs),
                    ["rows"] = ServerPlan.Predict(inputs, counts).Select(r => new Dictionary<string, object>
                    {
                        ["servers"] = r.Servers,
                        ["step_ms"] = Math.Round(r.StepMs, 2),
                        ["compute_ms"] = Math.Round(r.ComputeMs, 2),
                        ["pull_ms"] = Math.Round(r.PullMs, 2),
                        ["push_ms"] = Math.Round(r.PushMs, 2),
                        ["examples_per_sec"] = Math.Round(r.ExamplesPerSecond),
                        ["bytes_per_server"] = r.BytesPerServer,
                        ["fits"] = r.Fits,
                    }).ToList(),
                }));
            }
            else
            {
                Console.Out.Write(ServerPlan.Explain(inputs, counts, string.Join("; ", sources)));
            }
            return ExitCodes.Ok;
        }));
        return command;
    }
}
