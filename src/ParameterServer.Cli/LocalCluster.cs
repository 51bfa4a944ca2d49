using System.CommandLine;
using System.Text.Json;

namespace ParameterServer.Cli;

/// <summary>
/// `pserver local`: a whole job on this machine as real processes, every node's output prefixed with its
/// name. With --json, one more line sums up the workers' results.
/// </summary>
internal static class LocalCluster
{
    public static readonly Option<int> Servers = Options.Create("--servers", 2, "Server processes to start");
    public static readonly Option<int> Workers = Options.Create("--workers", 2, "Worker processes to start");

    public static Command Command()
    {
        var command = new Command("local", "Start a local cluster (scheduler, servers, workers as child processes on 127.0.0.1) and run an app")
        {
            Servers, Workers, Options.Json, Options.VirtualNodes, Options.Replication, Options.HeartbeatMs, Options.HeartbeatTimeoutMs, Options.RequestTimeoutS,
            Options.CheckpointDir, Options.CheckpointEvery, Options.Restore, Options.OnWorkerFailure, Options.BackupAfter, Options.KeyCacheMb, Options.PullFilterMb,
        };
        foreach (var option in AppOptions.All)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            AppOptions.Create(p); // validate the app options here, not in every worker
            Options.CheckRestore(p);
            Options.ParseWorkerFailure(p);
            bool json = p.GetValue(Options.Json);
            var spec = Spec(p, AppOptions.Forward(p), json);
            var result = await LocalJob.RunAsync(spec, ct);
            if (result.Failure is not null)
            {
                await Console.Error.WriteLineAsync($"local: {result.Failure}");
                return result.ExitCode;
            }
            return Summarize(p.GetValue(AppOptions.App)!, result.WorkerLines, spec.Workers, json);
        }));
        return command;
    }

    /// <summary>Starts `pserver scheduler` with the launcher options on a free port; returns its address.</summary>
    internal static Task<string> StartSchedulerAsync(ProcessGroup children, int servers, int workers, ParseResult p, string logLevel, bool echo, CancellationToken ct)
    {
        CheckReplication(p, servers);
        return LocalJob.StartSchedulerAsync(children, servers, workers, SchedulerArguments(p), logLevel, echo, ct);
    }

    internal static string Inv(int value) => LocalJob.Inv(value);

    /// <summary>Refuses a replication factor the cluster cannot hold before any process starts.</summary>
    internal static void CheckReplication(ParseResult p, int servers)
    {
        int replication = p.GetValue(Options.Replication);
        if (replication < 0 || replication > servers)
        {
            throw new ArgumentException($"--replication {replication} needs at least {replication} servers; this cluster has {servers} (use --servers {Math.Max(replication, 1)} or a smaller --replication)");
        }
    }

    private static string[] SchedulerArguments(ParseResult p) =>
    [
        "--virtual-nodes", LocalJob.Inv(p.GetValue(Options.VirtualNodes)), "--replication", LocalJob.Inv(p.GetValue(Options.Replication)), "--heartbeat-ms", LocalJob.Inv(p.GetValue(Options.HeartbeatMs)),
        "--heartbeat-timeout-ms", LocalJob.Inv(p.GetValue(Options.HeartbeatTimeoutMs)),
        .. Options.CheckpointArguments(p),
        .. Options.WorkArguments(p),
    ];

    /// <summary>The job spec from the launcher options shared by `local`, `train` and the benchmarks.</summary>
    public static LocalJobSpec Spec(ParseResult p, IReadOnlyList<string> appArguments, bool json, bool resultsOnly = false, string? logLevel = null)
    {
        int servers = p.GetValue(Servers);
        int workers = p.GetValue(Workers);
        if (servers < 1 || workers < 1)
        {
            throw new ArgumentException($"--servers and --workers must be at least 1 (got {servers} and {workers})");
        }
        CheckReplication(p, servers);
        return new LocalJobSpec
        {
            Servers = servers,
            Workers = workers,
            LogLevel = logLevel ?? p.GetValue(Options.LogLevel)!,
            ResultsOnly = resultsOnly,
            SchedulerArguments = SchedulerArguments(p),
            ServerArguments = [.. json && !resultsOnly ? ["--json"] : Array.Empty<string>(), .. Options.ServerMemoryArguments(p)],
            WorkerArguments = ["--request-timeout", LocalJob.Inv(p.GetValue(Options.RequestTimeoutS)), .. (json ? new[] { "--json" } : []), .. appArguments],
        };
    }

    /// <summary>One more line that sums the workers' JSON results up, the same way each worker reports.</summary>
    private static int Summarize(string app, IReadOnlyList<string> lines, int workers, bool json)
    {
        if (!json)
        {
            Console.Out.WriteLine($"local: all {workers} workers finished");
            return ExitCodes.Ok;
        }
        var results = lines.Where(l => l.StartsWith("{\"app\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        if (app != "counter")
        {
            return ExitCodes.Ok; // other apps print their own job-wide summary from rank 0
        }
        if (results.Count != workers)
        {
            Console.Error.WriteLine($"local: expected {workers} result lines from the workers, got {results.Count}");
            return ExitCodes.Failed;
        }
        bool ok = results.All(r => r.TryGetProperty("ok", out var v) && v.GetBoolean());
        var summary = new Dictionary<string, object>
        {
            ["app"] = app,
            ["ok"] = ok,
            ["workers"] = workers,
            ["keys"] = results[0].GetProperty("keys").GetInt64(),
            ["pushes"] = results.Sum(r => r.GetProperty("pushes").GetInt64()),
            ["mismatches"] = results.Sum(r => r.GetProperty("mismatches").GetInt64()),
            ["seconds"] = results.Max(r => r.GetProperty("seconds").GetDouble()),
        };
        Console.Out.WriteLine(JsonSerializer.Serialize(summary));
        return ok ? ExitCodes.Ok : ExitCodes.Failed;
    }
}
