using System.CommandLine;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Hosting;
using ParameterServer.Scheduler;
using ParameterServer.Server;

namespace ParameterServer.Cli;

/// <summary>`pserver scheduler`, `pserver server`, `pserver worker`: one node each, runnable by hand on any host.</summary>
internal static class NodeCommands
{
    public static readonly Option<int> Port = Options.Create("--port", 9700, "Port to listen on (0: any free port)");
    public static readonly Option<string> Host = Options.Create("--host", "127.0.0.1", "Address to listen on (0.0.0.0 for all interfaces)");
    public static readonly Option<string?> Advertise = Options.Create<string?>("--advertise", null, "Host name other nodes use to reach this one (default: --host)");
    public static readonly Option<int> ExpectedServers = Options.Create("--servers", 1, "Servers the job waits for before it starts");
    public static readonly Option<int> ExpectedWorkers = Options.Create("--workers", 1, "Workers the job waits for before it starts");
    public static readonly Option<int> StartupTimeoutS = Options.Create("--startup-timeout", 300, "Seconds to wait for all nodes to register");
    public static readonly Option<bool> Join = Options.Create("--join", false, "Join a job that is already running (elastic scaling) instead of being one of the nodes it starts with");

    public static Command Scheduler()
    {
        var command = new Command("scheduler", "Run the scheduler: membership, key ranges (consistent hashing), views, barriers, shutdown")
        {
            Host, Port, Advertise, ExpectedServers, ExpectedWorkers, Options.VirtualNodes, Options.Replication, Options.HeartbeatMs, Options.HeartbeatTimeoutMs, StartupTimeoutS, Options.MaxFrameMb,
            Options.CheckpointDir, Options.CheckpointEvery, Options.Restore, Options.OnWorkerFailure, Options.BackupAfter, Options.StateDir,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            Options.CheckRestore(p);
            using var loggers = Logging.Create(p.GetValue(Options.LogLevel)!);
            var options = new SchedulerOptions
            {
                Host = p.GetValue(Host)!,
                Port = p.GetValue(Port),
                AdvertisedHost = p.GetValue(Advertise),
                Servers = p.GetValue(ExpectedServers),
                Workers = p.GetValue(ExpectedWorkers),
                VirtualNodes = p.GetValue(Options.VirtualNodes),
                Replication = p.GetValue(Options.Replication),
                HeartbeatInterval = TimeSpan.FromMilliseconds(p.GetValue(Options.HeartbeatMs)),
                HeartbeatTimeout = TimeSpan.FromMilliseconds(p.GetValue(Options.HeartbeatTimeoutMs)),
                StartupTimeout = TimeSpan.FromSeconds(p.GetValue(StartupTimeoutS)),
                CheckpointDirectory = p.GetValue(Options.CheckpointDir),
                CheckpointInterval = TimeSpan.FromSeconds(p.GetValue(Options.CheckpointEvery)),
                RestoreFrom = p.GetValue(Options.Restore),
                OnWorkerFailure = Options.ParseWorkerFailure(p),
                StateDirectory = p.GetValue(Options.StateDir),
                BackupAfter = TimeSpan.FromSeconds(Math.Max(0, p.GetValue(Options.BackupAfter))),
                Transport = Options.Transport(p),
            };
            await using var scheduler = SchedulerNode.Start(options, loggers);
            // `pserver local` reads this line to learn the port when it asked for port 0.
            Console.Out.WriteLine($"scheduler listening on {options.AdvertisedHost ?? options.Host}:{scheduler.Port}");
            Console.Out.Flush();
            loggers.CreateLogger("scheduler").LogInformation("Scheduler listening on {Host}:{Port}, waiting for {Servers} servers and {Workers} workers",
                options.Host, scheduler.Port, options.Servers, options.Workers);
            return await scheduler.Completion.WaitAsync(ct);
        }));
        return command;
    }

    public static Command Server()
    {
        var serverPort = Options.Create("--port", 0, "Port to listen on for workers (0: any free port)");
        var command = new Command("server", "Run a server: holds a share of the parameters and applies updates")
        {
            Options.Scheduler, Host, serverPort, Advertise, Options.Json, Options.MaxFrameMb, Join, Options.KeyCacheMb, Options.PullFilterMb,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            using var loggers = Logging.Create(p.GetValue(Options.LogLevel)!);
            var options = new ServerOptions
            {
                Scheduler = p.GetValue(Options.Scheduler)!,
                Host = p.GetValue(Host)!,
                Port = p.GetValue(serverPort),
                AdvertisedHost = p.GetValue(Advertise),
                Transport = Options.Transport(p),
                Join = p.GetValue(Join),
                KeyCacheBytes = Options.Bytes(p, Options.KeyCacheMb),
                PullFilterBytes = Options.Bytes(p, Options.PullFilterMb),
            };
            await using var server = await ServerNode.StartAsync(options, loggers, ct);
            int code = await server.Completion.WaitAsync(ct);
            if (p.GetValue(Options.Json))
            {
                Console.Out.WriteLine(server.StatsJson());
            }
            return code;
        }));
        return command;
    }

    public static Command Worker()
    {
        var command = new Command("worker", "Run a worker: runs an app that pushes and pulls parameters")
        {
            Options.Scheduler, Options.Json, Options.RequestTimeoutS, StartupTimeoutS, Options.MaxFrameMb, Join,
        };
        foreach (var option in AppOptions.All)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            using var loggers = Logging.Create(p.GetValue(Options.LogLevel)!);
            var app = AppOptions.Create(p);
            var options = new WorkerOptions
            {
                Scheduler = p.GetValue(Options.Scheduler)!,
                RequestTimeout = TimeSpan.FromSeconds(p.GetValue(Options.RequestTimeoutS)),
                StartupTimeout = TimeSpan.FromSeconds(p.GetValue(StartupTimeoutS)),
                Transport = Options.Transport(p),
                Join = p.GetValue(Join),
            };
            IProgress<JobProgress> progress = Environment.GetEnvironmentVariable(ProgressEvents.Variable) == "1" ? new ProgressEvents() : new ConsoleProgress();
            return await WorkerHost.RunAsync(options, app, loggers, Console.Out, p.GetValue(Options.Json), progress, ct);
        }));
        return command;
    }
}
