using System.CommandLine;

namespace ParameterServer.Hosting;

/// <summary>
/// The launcher options and arithmetic shared by `pserver local`, `pserver train NAME` and the benchmarks: how many
/// nodes, the scheduler's arguments, the job spec that <see cref="LocalJob"/> runs.
/// </summary>
public static class LocalCluster
{
    /// <summary>--servers: server processes to start.</summary>
    public static readonly Option<int> Servers = PsOptions.Create("--servers", 2, "Server processes to start");

    /// <summary>--workers: worker processes to start.</summary>
    public static readonly Option<int> Workers = PsOptions.Create("--workers", 2, "Worker processes to start");

    /// <summary>`pserver local`'s --dashboard-port: on by default (any free port), its URL printed.</summary>
    public static readonly Option<int> DashboardPort = PsOptions.Create("--dashboard-port", 0, "Serve the job's dashboard from the scheduler on this port (0: any free port, printed; -1: off)");

    /// <summary>Starts `pserver scheduler` with the launcher options on a free port; returns its address.</summary>
    public static Task<string> StartSchedulerAsync(ProcessGroup children, int servers, int workers, ParseResult p, string logLevel, bool echo, CancellationToken ct, IEnumerable<string>? moreArguments = null)
        => StartSchedulerOnAsync(children, null, servers, workers, p, logLevel, echo, ct, moreArguments);

    /// <summary>As <see cref="StartSchedulerAsync"/>, inside <paramref name="host"/>'s network namespace (null: loopback).</summary>
    public static Task<string> StartSchedulerOnAsync(ProcessGroup children, Network.LabHost? host, int servers, int workers, ParseResult p, string logLevel, bool echo, CancellationToken ct, IEnumerable<string>? moreArguments = null)
    {
        CheckReplication(p, servers);
        return LocalJob.StartSchedulerOnAsync(children, host, servers, workers, [.. SchedulerArguments(p), .. moreArguments ?? []], logLevel, echo, ct);
    }

    /// <summary>An integer as an argument (invariant culture).</summary>
    public static string Inv(int value) => LocalJob.Inv(value);

    /// <summary>Refuses a replication factor the cluster cannot hold before any process starts.</summary>
    public static void CheckReplication(ParseResult p, int servers)
    {
        int replication = p.GetValue(PsOptions.Replication);
        if (replication < 0 || replication > servers)
        {
            throw new ArgumentException($"--replication {replication} needs at least {replication} servers; this cluster has {servers} (use --servers {Math.Max(replication, 1)} or a smaller --replication)");
        }
    }

    private static string[] SchedulerArguments(ParseResult p) =>
    [
        "--virtual-nodes", LocalJob.Inv(p.GetValue(PsOptions.VirtualNodes)), "--replication", LocalJob.Inv(p.GetValue(PsOptions.Replication)), "--heartbeat-ms", LocalJob.Inv(p.GetValue(PsOptions.HeartbeatMs)),
        "--heartbeat-timeout-ms", LocalJob.Inv(p.GetValue(PsOptions.HeartbeatTimeoutMs)),
        .. PsOptions.CheckpointArguments(p),
        .. PsOptions.WorkArguments(p),
    ];

    /// <summary>
    /// An app's `pserver train` job: a local cluster from the launcher options with <paramref name="appArguments"/> for
    /// its workers, only results on standard output (logs at warning unless --log-level). A failure is printed as
    /// "<paramref name="command"/>: ..." on standard error. Returns the exit code.
    /// </summary>
    public static async Task<int> TrainAsync(ParseResult p, IReadOnlyList<string> appArguments, string command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(p);
        string logLevel = p.GetResult(PsOptions.LogLevel) is { Implicit: false } ? p.GetValue(PsOptions.LogLevel)! : "warning";
        var result = await LocalJob.RunAsync(Spec(p, appArguments, p.GetValue(PsOptions.Json), resultsOnly: true, logLevel: logLevel), cancellationToken).ConfigureAwait(false);
        if (result.Failure is null)
        {
            return ExitCodes.Ok;
        }
        await Console.Error.WriteLineAsync($"{command}: {result.Failure}").ConfigureAwait(false);
        return result.ExitCode;
    }

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
            LogLevel = logLevel ?? p.GetValue(PsOptions.LogLevel)!,
            ResultsOnly = resultsOnly,
            MetricsPort = p.GetResult(PsOptions.MetricsPort) is null ? -1 : p.GetValue(PsOptions.MetricsPort),
            DashboardPort = p.GetResult(DashboardPort) is not null ? p.GetValue(DashboardPort) : p.GetResult(PsOptions.DashboardPort) is not null ? p.GetValue(PsOptions.DashboardPort) : -1,
            TracePath = p.GetResult(PsOptions.Trace) is null ? null : p.GetValue(PsOptions.Trace),
            TraceSteps = p.GetResult(PsOptions.TraceSteps) is null ? null : p.GetValue(PsOptions.TraceSteps),
            SchedulerArguments = SchedulerArguments(p),
            ServerArguments = [.. json && !resultsOnly ? ["--json"] : Array.Empty<string>(), .. PsOptions.ServerMemoryArguments(p)],
            WorkerArguments = ["--request-timeout", LocalJob.Inv(p.GetValue(PsOptions.RequestTimeoutS)), .. (json ? new[] { "--json" } : []), .. appArguments],
        };
    }
}
