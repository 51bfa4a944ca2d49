using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Hosting;
using ParameterServer.Hosting.Network;
using ParameterServer.Hosting.Planning;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench yt8m-scale`: the seed article's one server against many. Every (servers, workers) pair trains yt8m
/// for an epoch with each node on a host of its own (a network namespace) behind a token-bucket link of --link-mbit
/// each way, or on loopback (--link-mbit 0); each row beside what `pserver plan` predicts from that run's compute
/// per step and the link's rate.
/// </summary>
public static class BenchYt8mScale
{
    /// <summary>--servers-list.</summary>
    public static readonly Option<string> ServersList = PsOptions.Create("--servers-list", "1,2,4", "Server counts to run, comma-separated");

    /// <summary>--workers-list.</summary>
    public static readonly Option<string> WorkersList = PsOptions.Create("--workers-list", "1,2,4", "Worker counts to run, comma-separated");

    /// <summary>--link-mbit.</summary>
    public static readonly Option<int> LinkMbit = PsOptions.Create("--link-mbit", 100, "Each host's link in Mbit/s each way (tbf in a network namespace per node; on 2 cores, 1000 is CPU-bound); 0 runs on loopback");

    /// <summary>Returns the exit code.</summary>
    public static async Task<int> RunAsync(ParseResult p, string[] appArguments, CancellationToken ct) // appArguments: --app yt8m and its options
    {
        ArgumentNullException.ThrowIfNull(p);
        var servers = Counts(p, ServersList);
        var workers = Counts(p, WorkersList);
        int mbit = p.GetValue(LinkMbit);
        if (mbit < 0)
        {
            throw new ArgumentException($"--link-mbit must be 0 (loopback) or a rate, got {mbit}");
        }
        if (mbit > 0 && NetworkLab.Unavailable is { } why)
        {
            throw new ArgumentException($"--link-mbit {mbit} puts every node in a network namespace, which needs root and iproute2 here: {why}; run with --link-mbit 0 for loopback");
        }
        bool json = p.GetValue(PsOptions.Json);
        int replication = p.GetValue(PsOptions.Replication);
        if (replication < 0)
        {
            throw new ArgumentException($"--replication must be 0 (2 copies from 2 servers on) or a number of copies, got {replication}");
        }
        if (!json)
        {
            Console.Out.WriteLine($"{(mbit > 0 ? $"a host per node, {mbit} Mbit/s links (tbf)" : "loopback")}, {(replication > 0 ? $"{replication}" : "2")} copies from 2 servers on; plan: that run's compute + pull + push from the link's rate");
            Console.Out.WriteLine("servers  workers  examples/s  step ms  compute  pull    push    MB/server  plan step  plan pull  error");
        }
        foreach (int w in workers)
        {
            foreach (int s in servers)
            {
                var run = await RunOneAsync(s, w, mbit, replication, appArguments, ct);
                double computeMs = run.GetProperty("compute_ms").GetDouble();
                double stepMs = run.GetProperty("step_ms").GetDouble();
                // Loopback has no link rate of its own: the plan takes the data path's measured rate, as `pserver plan` does.
                double bytesPerSecond = mbit > 0 ? mbit * 1e6 / 8 : await DataPath.MeasureAsync(run.GetProperty("parameters").GetInt64() * 4, ct);
                var predicted = ServerPlan.Row(new PlanInputs
                {
                    ModelBytes = run.GetProperty("parameters").GetInt64() * 4,
                    Workers = w,
                    BytesPerSecond = bytesPerSecond,
                    ComputeMs = computeMs,
                    Replication = replication > 0 ? replication : 2,
                }, s);
                double error = (predicted.StepMs - stepMs) / stepMs;
                var row = new Dictionary<string, object>
                {
                    ["bench"] = "yt8m-scale",
                    ["link_mbit"] = mbit,
                    ["replication"] = replication > 0 ? replication : 2,
                    ["servers"] = s,
                    ["workers"] = w,
                    ["examples_per_sec"] = run.GetProperty("examples_per_sec").GetDouble(),
                    ["step_ms"] = stepMs,
                    ["compute_ms"] = computeMs,
                    ["pull_ms"] = run.GetProperty("pull_ms").GetDouble(),
                    ["push_ms"] = run.GetProperty("push_ms").GetDouble(),
                    ["bytes_per_server"] = run.GetProperty("bytes_per_server").GetInt64(),
                    ["plan_step_ms"] = Math.Round(predicted.StepMs, 1),
                    ["plan_pull_ms"] = Math.Round(predicted.PullMs, 1),
                    ["plan_error"] = Math.Round(error, 3),
                };
                Console.Out.WriteLine(json ? JsonSerializer.Serialize(row) : string.Create(CultureInfo.InvariantCulture,
                    $"{s,7}  {w,7}  {row["examples_per_sec"],10:N0}  {stepMs,7:0.0}  {computeMs,7:0.0}  {row["pull_ms"],6:0.0}  {row["push_ms"],6:0.0}  {(long)row["bytes_per_server"] / 1e6,9:N0}  {predicted.StepMs,9:0.0}  {predicted.PullMs,9:0.0}  {error,5:+0%;-0%}"));
                Console.Out.Flush();
            }
        }
        return ExitCodes.Ok;
    }

    private static List<int> Counts(ParseResult p, Option<string> option)
    {
        var counts = new List<int>();
        foreach (string part in p.GetValue(option)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, CultureInfo.InvariantCulture, out int n) || n is < 1 or > 16)
            {
                throw new ArgumentException($"{option.Name} takes counts from 1 to 16, comma-separated; '{part}' is not one");
            }
            counts.Add(n);
        }
        return counts;
    }

    // One job: the scheduler, the servers and the workers on hosts of their own (or loopback); rank 0's summary line.
    private static async Task<JsonElement> RunOneAsync(int servers, int workers, int mbit, int replication, string[] appArguments, CancellationToken ct)
    {
        Console.Error.WriteLine($"bench yt8m-scale: {servers} server(s) x {workers} worker(s)...");
        using var lab = mbit > 0 ? NetworkLab.Create(1 + servers + workers) : null;
        if (lab is not null)
        {
            foreach (var host in lab.Hosts)
            {
                lab.Slow(host, delayMs: 0, megabits: mbit, lossPercent: 0);
            }
        }
        using var group = new ProcessGroup();
        string schedulerHost = lab?.Hosts[0].Address ?? "127.0.0.1";
        JsonElement? summary = null;
        ProcessGroup.Child Start(int host, string name, string[] arguments, Func<string, bool>? onLine = null) =>
            lab is null ? group.Start(name, arguments, onLine) : group.StartOn(lab.Hosts[host], name, arguments, onLine);
        const string Listening = "scheduler listening on ";
        var address = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        Start(0, "scheduler", ["scheduler", "--host", schedulerHost, "--port", "0", "--servers", LocalJob.Inv(servers), "--workers", LocalJob.Inv(workers), "--replication", LocalJob.Inv(replication), "--log-level", "warning"], line =>
        {
            if (line.StartsWith(Listening, StringComparison.Ordinal))
            {
                address.TrySetResult(line[Listening.Length..].Trim());
            }
            return false;
        });
        string scheduler = await address.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        for (int i = 0; i < servers; i++)
        {
            Start(1 + i, $"server {i}", ["server", "--scheduler", scheduler, "--host", lab?.Hosts[1 + i].Address ?? "127.0.0.1", "--log-level", "warning"], _ => false);
        }
        for (int i = 0; i < workers; i++)
        {
            Start(1 + servers + i, $"worker {i}", ["worker", "--scheduler", scheduler, "--json", "--log-level", "warning", .. appArguments], line =>
            {
                if (line.StartsWith("{\"app\":\"yt8m\",\"model\"", StringComparison.Ordinal))
                {
                    summary = JsonDocument.Parse(line).RootElement.Clone();
                }
                return false;
            });
        }
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromMinutes(10));
        var failure = await group.WaitAllAsync(limit.Token);
        await group.DrainAsync();
        if (failure is { } f)
        {
            throw new InvalidOperationException($"the {servers} x {workers} job failed: {f.Failure}");
        }
        return summary ?? throw new InvalidOperationException(limit.IsCancellationRequested
            ? $"the {servers} x {workers} job did not finish within 10 minutes"
            : $"the {servers} x {workers} job ended without rank 0's summary line");
    }
}
