using System.CommandLine;
using System.Globalization;
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
        var results = new List<JsonElement>();
        (string Failure, int Code)? failure;
        using var children = new ProcessGroup();
        try
        {
            string address = await StartSchedulerAsync(children, servers, workers, p, logLevel, echo: true, ct);
            for (int i = 0; i < servers; i++)
            {
                children.Start($"server {i}", ["server", "--scheduler", address, "--log-level", logLevel, .. (json ? new[] { "--json" } : [])]);
            }
            for (int i = 0; i < workers; i++)
            {
                children.Start($"worker {i}",
                    ["worker", "--scheduler", address, "--log-level", logLevel, "--request-timeout", Inv(p.GetValue(Options.RequestTimeoutS)),
                     .. (json ? new[] { "--json" } : []), .. AppOptions.Forward(p)],
                    line =>
                    {
                        if (line.StartsWith("{\"app\"", StringComparison.Ordinal))
                        {
                            lock (children.Output)
                            {
                                results.Add(JsonDocument.Parse(line).RootElement.Clone());
                            }
                        }
                        return true;
                    });
            }

            // Wait for every child; the first failure stops the rest.
            failure = await children.WaitAllAsync(ct);
        }
        finally
        {
            children.Kill();
        }

        await children.DrainAsync();
        if (ct.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("local: interrupted; all nodes stopped");
            return ExitCodes.Interrupted;
        }
        if (failure is { } f)
        {
            await Console.Error.WriteLineAsync($"local: {f.Failure}; stopped the other nodes");
            return f.Code;
        }
        return Summarize(p.GetValue(AppOptions.App)!, results, workers, json);
    }

    /// <summary>Starts `pserver scheduler` on a free port and returns its address once it printed it; <paramref name="echo"/> passes its standard output on.</summary>
    internal static async Task<string> StartSchedulerAsync(ProcessGroup children, int servers, int workers, ParseResult p, string logLevel, bool echo, CancellationToken ct)
    {
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        children.Start("scheduler",
            ["scheduler", "--port", "0", "--servers", Inv(servers), "--workers", Inv(workers),
             "--virtual-nodes", Inv(p.GetValue(Options.VirtualNodes)), "--heartbeat-ms", Inv(p.GetValue(Options.HeartbeatMs)),
             "--heartbeat-timeout-ms", Inv(p.GetValue(Options.HeartbeatTimeoutMs)), "--log-level", logLevel],
            line =>
            {
                if (ListeningLine().Match(line) is { Success: true } m)
                {
                    listening.TrySetResult(m.Groups[1].Value);
                }
                return echo;
            });
        try
        {
            return await listening.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, "the scheduler did not report its port within 30 s");
        }
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

    internal static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^scheduler listening on (\S+:\d+)$")]
    private static partial Regex ListeningLine();
}
