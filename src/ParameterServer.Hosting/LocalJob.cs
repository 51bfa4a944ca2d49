using System.Globalization;
using System.Text.RegularExpressions;

namespace ParameterServer.Hosting;

/// <summary>What to start: node counts, the workers' app arguments, and how to show the output.</summary>
public sealed record LocalJobSpec
{
    /// <summary>Server processes to start.</summary>
    public required int Servers { get; init; }

    /// <summary>Worker processes to start.</summary>
    public required int Workers { get; init; }

    /// <summary>Arguments after `pserver worker --scheduler ADDRESS --log-level L`: the app and its options.</summary>
    public required IReadOnlyList<string> WorkerArguments { get; init; }

    /// <summary>More arguments for `pserver scheduler`.</summary>
    public IReadOnlyList<string> SchedulerArguments { get; init; } = [];

    /// <summary>More arguments for every `pserver server`.</summary>
    public IReadOnlyList<string> ServerArguments { get; init; } = [];

    /// <summary>
    /// Every node serves /metrics and /health (--metrics-port): the scheduler on this port, the others on free ports
    /// they log (-1: none).
    /// </summary>
    public int MetricsPort { get; init; } = -1;

    /// <summary>The scheduler serves the job's dashboard on this port (0: any free port; -1: none); its URL is printed on standard error.</summary>
    public int DashboardPort { get; init; } = -1;

    /// <summary>Every server and worker records a Chrome trace (--trace); the job merges them into this file (null: none).</summary>
    public string? TracePath { get; init; }

    /// <summary>The workers' --trace-steps (null: their default).</summary>
    public string? TraceSteps { get; init; }

    /// <summary>The --log-level of every node.</summary>
    public string LogLevel { get; init; } = "info";

    /// <summary>
    /// False (`pserver local`): every line of every node, prefixed with the node's name. True (`pserver train`):
    /// the workers' results unprefixed on standard output, node logs prefixed on standard error, nothing else.
    /// </summary>
    public bool ResultsOnly { get; init; }

    /// <summary>Print what the nodes write on standard output (false: only collect the workers' result lines).</summary>
    public bool Echo { get; init; } = true;

    /// <summary>Draw the workers' progress events (otherwise they are dropped).</summary>
    public bool ShowProgress { get; init; } = true;
}

/// <summary>How a local job ended: its exit code, what failed (null: nothing), and the workers' JSON lines.</summary>
public sealed record LocalJobResult(int ExitCode, string? Failure, IReadOnlyList<string> WorkerLines);

/// <summary>
/// Runs a whole job on this machine as real processes (scheduler, servers, workers) in a <see cref="ProcessGroup"/>,
/// streams their output, stops everything on Ctrl-C or when a node fails. The scheduler is given port 0 and
/// reports the one it got.
/// </summary>
public static partial class LocalJob
{
    /// <summary>Starts the job, streams its output, and waits until every node exited, one failed, or <paramref name="ct"/> is cancelled.</summary>
    public static async Task<LocalJobResult> RunAsync(LocalJobSpec spec, CancellationToken ct)
    {
        using var children = new ProcessGroup();
        var workerLines = new List<string>();
        var progress = new ConsoleProgress();

        // Returns whether the group should echo the line with the node's prefix.
        bool OnStdout(string line, bool show)
        {
            if (ProgressEvents.TryParse(line, out var p))
            {
                if (spec.ShowProgress)
                {
                    progress.Report(p);
                }
                return false;
            }
            if (!show || !spec.Echo)
            {
                return false;
            }
            progress.Clear();
            if (spec.ResultsOnly)
            {
                lock (children.Output)
                {
                    Console.Out.WriteLine(line);
                }
                return false;
            }
            return true;
        }

        // Each server and worker writes its own trace next to the merged one; they are merged when the job ends.
        var traceParts = new List<string>();
        string[] Trace(string node)
        {
            if (spec.TracePath is null)
            {
                return [];
            }
            string part = $"{spec.TracePath}.{node}.part";
            traceParts.Add(part);
            return ["--trace", part];
        }

        (string Failure, int Code)? failure;
        try
        {
            string[] metrics = spec.MetricsPort < 0 ? [] : ["--metrics-port", "0"];
            string address = await StartSchedulerAsync(children, spec.Servers, spec.Workers,
                [.. spec.SchedulerArguments, .. spec.MetricsPort < 0 ? Array.Empty<string>() : ["--metrics-port", Inv(spec.MetricsPort)],
                    .. spec.DashboardPort < 0 ? Array.Empty<string>() : ["--dashboard-port", Inv(spec.DashboardPort)]], spec.LogLevel, echo: !spec.ResultsOnly && spec.Echo, ct);
            for (int i = 0; i < spec.Servers; i++)
            {
                children.Start($"server {i}", ["server", "--scheduler", address, "--log-level", spec.LogLevel, .. metrics, .. Trace($"server{i}"), .. spec.ServerArguments], line => OnStdout(line, !spec.ResultsOnly));
            }
            string[] traceSteps = spec.TracePath is not null && spec.TraceSteps is not null ? ["--trace-steps", spec.TraceSteps] : [];
            for (int i = 0; i < spec.Workers; i++)
            {
                children.Start($"worker {i}", ["worker", "--scheduler", address, "--log-level", spec.LogLevel, .. metrics, .. Trace($"worker{i}"), .. traceSteps, .. spec.WorkerArguments], line =>
                {
                    if (line.StartsWith('{') && !line.StartsWith(ProgressEvents.Prefix, StringComparison.Ordinal))
                    {
                        lock (children.Output)
                        {
                            workerLines.Add(line);
                        }
                    }
                    return OnStdout(line, show: true);
                });
            }
            failure = await children.WaitAllAsync(ct);
        }
        finally
        {
            children.Kill();
        }
        await children.DrainAsync();
        progress.Clear();
        if (spec.TracePath is { } tracePath)
        {
            int spans = ChromeTrace.Merge(traceParts, tracePath);
            foreach (string part in traceParts)
            {
                File.Delete(part);
            }
            Console.Error.WriteLine($"pserver: {spans:N0} spans of the job's servers and workers in {tracePath} (open it in chrome://tracing or ui.perfetto.dev)");
        }
        if (ct.IsCancellationRequested)
        {
            return new LocalJobResult(ExitCodes.Interrupted, "interrupted; all nodes stopped", workerLines);
        }
        return failure is { } f
            ? new LocalJobResult(f.Code, $"{f.Failure}; stopped the other nodes", workerLines)
            : new LocalJobResult(ExitCodes.Ok, null, workerLines);
    }

    /// <summary>Starts `pserver scheduler` on a free port and returns its address once it printed it; <paramref name="echo"/> passes its standard output on.</summary>
    public static async Task<string> StartSchedulerAsync(ProcessGroup children, int servers, int workers, IEnumerable<string> schedulerArguments, string logLevel, bool echo, CancellationToken ct)
        => await StartSchedulerOnAsync(children, null, servers, workers, schedulerArguments, logLevel, echo, ct).ConfigureAwait(false);

    /// <summary>As <see cref="StartSchedulerAsync"/>, inside <paramref name="host"/>'s network namespace, listening on its address (null: this host, loopback).</summary>
    public static async Task<string> StartSchedulerOnAsync(ProcessGroup children, Network.LabHost? host, int servers, int workers, IEnumerable<string> schedulerArguments, string logLevel, bool echo, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(children);
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        string[] arguments = ["scheduler", "--port", "0", "--servers", Inv(servers), "--workers", Inv(workers), "--log-level", logLevel,
            .. host is null ? Array.Empty<string>() : ["--host", host.Address], .. schedulerArguments];
        Func<string, bool> onLine = line =>
            {
                if (ListeningLine().Match(line) is { Success: true } m)
                {
                    listening.TrySetResult(m.Groups[1].Value);
                }
                else if (line.StartsWith("dashboard at ", StringComparison.Ordinal))
                {
                    // The job's secret is this process's own: the link carries the read-only token the dashboard asks for.
                    string token = Transport.JobSecret.FromEnvironment() is { } secret ? "?token=" + System.Text.Encoding.ASCII.GetString(Transport.JobSecret.ReadTokenOf(secret)) : "";
                    Console.Error.WriteLine($"pserver: the job's {line}{token}");
                    return false;
                }
                return echo;
            };
        if (host is null)
        {
            children.Start("scheduler", arguments, onLine);
        }
        else
        {
            children.StartOn(host, "scheduler", arguments, onLine);
        }
        try
        {
            return await listening.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, "the scheduler did not report its port within 30 s");
        }
    }

    /// <summary>An integer as an argument (invariant culture).</summary>
    public static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^scheduler listening on (\S+:\d+)$")]
    private static partial Regex ListeningLine();
}
