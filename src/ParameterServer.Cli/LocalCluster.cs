using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ParameterServer.Cli;

/// <summary>
/// `pserver local`: a whole job on this machine as real processes (scheduler, servers, workers), their
/// output streamed with a node prefix. Stops everything on Ctrl-C or when a node fails; exits non-zero then.
/// </summary>
internal static partial class LocalCluster
{
    private static readonly Option<int> Servers = Options.Create("--servers", 2, "Server processes to start");
    private static readonly Option<int> Workers = Options.Create("--workers", 2, "Worker processes to start");

    public static Command Command()
    {
        var command = new Command("local", "Start a local cluster (scheduler, servers, workers as child processes on 127.0.0.1) and run an app")
        {
            Servers, Workers, Options.Json, Options.VirtualNodes, Options.HeartbeatMs, Options.HeartbeatTimeoutMs, Options.RequestTimeoutS,
        };
        foreach (var option in AppOptions.All)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => RunAsync(p, ct)));
        return command;
    }

    private sealed record Child(string Name, Process Process);

    private static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        int servers = p.GetValue(Servers);
        int workers = p.GetValue(Workers);
        if (servers < 1 || workers < 1)
        {
            throw new ArgumentException($"--servers and --workers must be at least 1 (got {servers} and {workers})");
        }
        AppOptions.Create(p); // validate the app options here, not in every worker
        bool json = p.GetValue(Options.Json);
        string logLevel = p.GetValue(Options.LogLevel)!;
        var children = new List<Child>();
        var pumps = new List<Task>();
        var results = new List<JsonElement>();
        var output = new Lock();
        using var failed = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, failed.Token);
        string? failure = null;
        int failureCode = ExitCodes.Ok;

        Child Start(string name, IEnumerable<string> arguments, Action<string>? onLine = null)
        {
            var process = Spawn(arguments);
            var child = new Child(name, process);
            children.Add(child);
            pumps.Add(Pump(process.StandardOutput, name, Console.Out, onLine, output));
            pumps.Add(Pump(process.StandardError, name, Console.Error, null, output));
            return child;
        }

        try
        {
            var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var scheduler = Start("scheduler",
                ["scheduler", "--port", "0", "--servers", Inv(servers), "--workers", Inv(workers),
                 "--virtual-nodes", Inv(p.GetValue(Options.VirtualNodes)), "--heartbeat-ms", Inv(p.GetValue(Options.HeartbeatMs)),
                 "--heartbeat-timeout-ms", Inv(p.GetValue(Options.HeartbeatTimeoutMs)), "--log-level", logLevel],
                line =>
                {
                    if (ListeningLine().Match(line) is { Success: true } m)
                    {
                        listening.TrySetResult(m.Groups[1].Value);
                    }
                });
            string address;
            try
            {
                address = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
            }
            catch (TimeoutException)
            {
                throw new PsException(PsErrorCode.Timeout, "the scheduler did not report its port within 30 s");
            }
            for (int i = 0; i < servers; i++)
            {
                Start($"server {i}", ["server", "--scheduler", address, "--log-level", logLevel, .. (json ? new[] { "--json" } : [])]);
            }
            for (int i = 0; i < workers; i++)
            {
                Start($"worker {i}",
                    ["worker", "--scheduler", address, "--log-level", logLevel, "--request-timeout", Inv(p.GetValue(Options.RequestTimeoutS)),
                     .. (json ? new[] { "--json" } : []), .. AppOptions.Forward(p)],
                    line =>
                    {
                        if (line.StartsWith("{\"app\"", StringComparison.Ordinal))
                        {
                            lock (output)
                            {
                                results.Add(JsonDocument.Parse(line).RootElement.Clone());
                            }
                        }
                    });
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
                        failureCode = child.Process.ExitCode == ExitCodes.Network ? ExitCodes.Network : ExitCodes.Failed;
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
        await Console.Out.FlushAsync(CancellationToken.None);
        if (ct.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("local: interrupted; all nodes stopped");
            return ExitCodes.Interrupted;
        }
        if (failure is not null)
        {
            await Console.Error.WriteLineAsync($"local: {failure}; stopped the other nodes");
            return failureCode;
        }
        return Summarize(p.GetValue(AppOptions.App)!, results, workers, json);
    }

    /// <summary>One more line that sums the workers' JSON results up, the same way each worker reports.</summary>
    private static int Summarize(string app, List<JsonElement> results, int workers, bool json)
    {
        if (!json)
        {
            Console.Out.WriteLine($"local: all {workers} workers finished");
            return ExitCodes.Ok;
        }
        if (results.Count != workers)
        {
            Console.Error.WriteLine($"local: expected {workers} result lines from the workers, got {results.Count}");
            return ExitCodes.Failed;
        }
        bool ok = results.All(r => r.TryGetProperty("ok", out var v) && v.GetBoolean());
        var summary = new Dictionary<string, object> { ["app"] = app, ["ok"] = ok, ["workers"] = workers };
        if (app == "counter")
        {
            summary["keys"] = results[0].GetProperty("keys").GetInt64();
            summary["pushes"] = results.Sum(r => r.GetProperty("pushes").GetInt64());
            summary["mismatches"] = results.Sum(r => r.GetProperty("mismatches").GetInt64());
            summary["seconds"] = results.Max(r => r.GetProperty("seconds").GetDouble());
        }
        Console.Out.WriteLine(JsonSerializer.Serialize(summary));
        return ok ? ExitCodes.Ok : ExitCodes.Failed;
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

    private static async Task Pump(StreamReader reader, string name, TextWriter target, Action<string>? onLine, Lock gate)
    {
        string prefix = $"[{name}] ";
        while (await reader.ReadLineAsync() is { } line)
        {
            onLine?.Invoke(line);
            lock (gate)
            {
                target.WriteLine(prefix + line);
            }
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

    private static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^scheduler listening on (\S+:\d+)$")]
    private static partial Regex ListeningLine();
}
