using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;

namespace ParameterServer.Cli;

/// <summary>What to start: node counts, the workers' app arguments, and how to show the output.</summary>
internal sealed record LocalJobSpec
{
    public required int Servers { get; init; }

    public required int Workers { get; init; }

    public required IReadOnlyList<string> WorkerArguments { get; init; }

    public IReadOnlyList<string> SchedulerArguments { get; init; } = [];

    public IReadOnlyList<string> ServerArguments { get; init; } = [];

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

internal sealed record LocalJobResult(int ExitCode, string? Failure, IReadOnlyList<string> WorkerLines);

/// <summary>
/// Runs a whole job on this machine as real processes (scheduler, servers, workers), streams their output,
/// stops everything on Ctrl-C or when a node fails. The scheduler is given port 0 and reports the one it got.
/// </summary>
internal static partial class LocalJob
{
    private sealed record Child(string Name, Process Process);

    public static async Task<LocalJobResult> RunAsync(LocalJobSpec spec, CancellationToken ct)
    {
        var children = new List<Child>();
        var pumps = new List<Task>();
        var workerLines = new List<string>();
        var output = new Lock();
        var progress = new ConsoleProgress();
        using var failed = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, failed.Token);
        string? failure = null;
        int failureCode = ExitCodes.Ok;

        void Start(string name, IEnumerable<string> arguments, Action<string>? onLine, bool showStdout)
        {
            var process = Spawn(arguments);
            children.Add(new Child(name, process));
            pumps.Add(Pump(process.StandardOutput, line =>
            {
                onLine?.Invoke(line);
                if (ProgressEvents.TryParse(line, out var p))
                {
                    if (spec.ShowProgress)
                    {
                        progress.Report(p);
                    }
                    return;
                }
                if (showStdout && spec.Echo)
                {
                    lock (output)
                    {
                        progress.Clear();
                        Console.Out.WriteLine(spec.ResultsOnly ? line : $"[{name}] {line}");
                    }
                }
            }));
            pumps.Add(Pump(process.StandardError, line =>
            {
                lock (output)
                {
                    progress.Clear();
                    Console.Error.WriteLine($"[{name}] {line}");
                }
            }));
        }

        try
        {
            var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            Start("scheduler",
                ["scheduler", "--port", "0", "--servers", Inv(spec.Servers), "--workers", Inv(spec.Workers), "--log-level", spec.LogLevel, .. spec.SchedulerArguments],
                line =>
                {
                    if (ListeningLine().Match(line) is { Success: true } m)
                    {
                        listening.TrySetResult(m.Groups[1].Value);
                    }
                },
                showStdout: !spec.ResultsOnly);
            string address;
            try
            {
                address = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
            }
            catch (TimeoutException)
            {
                throw new PsException(PsErrorCode.Timeout, "the scheduler did not report its port within 30 s");
            }
            for (int i = 0; i < spec.Servers; i++)
            {
                Start($"server {i}", ["server", "--scheduler", address, "--log-level", spec.LogLevel, .. spec.ServerArguments], null, showStdout: !spec.ResultsOnly);
            }
            for (int i = 0; i < spec.Workers; i++)
            {
                Start($"worker {i}", ["worker", "--scheduler", address, "--log-level", spec.LogLevel, .. spec.WorkerArguments],
                    line =>
                    {
                        if (line.StartsWith('{') && !line.StartsWith(ProgressEvents.Prefix, StringComparison.Ordinal))
                        {
                            lock (output)
                            {
                                workerLines.Add(line);
                            }
                        }
                    },
                    showStdout: true);
            }

            // Wait for every child; the first failure stops the rest.
            var exits = children.Select(async child =>
            {
                await child.Process.WaitForExitAsync(CancellationToken.None);
                if (child.Process.ExitCode != 0 && !linked.IsCancellationRequested)
                {
                    lock (output)
                    {
                        failure ??= $"{child.Name} exited with code {child.Process.ExitCode}";
                        failureCode = child.Process.ExitCode is ExitCodes.Network or ExitCodes.Usage ? child.Process.ExitCode : ExitCodes.Failed;
                    }
                    await failed.CancelAsync();
                }
            }).ToList();
            var all = Task.WhenAll(exits);
            await Task.WhenAny(all, Task.Delay(Timeout.Infinite, linked.Token));
            if (linked.IsCancellationRequested)
            {
                Kill(children);
                await all.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
            }
        }
        finally
        {
            Kill(children);
        }

        // Let the pumps drain what the children printed last (their result lines).
        await Task.WhenAny(Task.WhenAll(pumps), Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
        progress.Clear();
        await Console.Out.FlushAsync(CancellationToken.None);
        if (ct.IsCancellationRequested)
        {
            return new LocalJobResult(ExitCodes.Interrupted, "interrupted; all nodes stopped", workerLines);
        }
        return failure is not null
            ? new LocalJobResult(failureCode, $"{failure}; stopped the other nodes", workerLines)
            : new LocalJobResult(ExitCodes.Ok, null, workerLines);
    }

    private static Process Spawn(IEnumerable<string> arguments)
    {
        var (file, prefix) = Self();
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // closed when we die: the child exits (ParentWatch)
            UseShellExecute = false,
        };
        foreach (var a in prefix.Concat(arguments))
        {
            info.ArgumentList.Add(a);
        }
        info.Environment[ParentWatch.Variable] = "1";
        info.Environment[ProgressEvents.Variable] = "1";
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
    }

    /// <summary>How to run this same pserver again: the apphost, or `dotnet pserver.dll`.</summary>
    private static (string File, string[] Prefix) Self()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string name = Path.GetFileNameWithoutExtension(process);
        if (name.Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            return (process, [Assembly.GetEntryAssembly()!.Location]);
        }
        return (process, []);
    }

    private static async Task Pump(StreamReader reader, Action<string> onLine)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            onLine(line);
        }
    }

    private static void Kill(List<Child> children)
    {
        foreach (var child in children)
        {
            try
            {
                if (!child.Process.HasExited)
                {
                    child.Process.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
            }
        }
    }

    public static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^scheduler listening on (\S+:\d+)$")]
    private static partial Regex ListeningLine();
}
