using System.CommandLine;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Hosting;
using ParameterServer.Hosting.Http;
using ParameterServer.Scheduler;
using ParameterServer.Server;

namespace ParameterServer.Cli;

/// <summary>`pserver scheduler`, `pserver server`, `pserver worker`: one node each, runnable by hand on any host.</summary>
internal static class NodeCommands
{
    public static readonly Option<int> Port = PsOptions.Create("--port", 9700, "Port to listen on (0: any free port)");
    public static readonly Option<string> Host = PsOptions.Create("--host", "127.0.0.1", "Address to listen on (0.0.0.0 for all interfaces)");
    public static readonly Option<string?> Advertise = PsOptions.Create<string?>("--advertise", null, "Host name other nodes use to reach this one (default: --host)");
    public static readonly Option<int> ExpectedServers = PsOptions.Create("--servers", 1, "Servers the job waits for before it starts");
    public static readonly Option<int> ExpectedWorkers = PsOptions.Create("--workers", 1, "Workers the job waits for before it starts");
    public static readonly Option<int> StartupTimeoutS = PsOptions.Create("--startup-timeout", 300, "Seconds to wait for the job to start: servers and workers wait this long for their scheduler to accept them (they may start first), the scheduler for all nodes to register");
    public static readonly Option<bool> Join = PsOptions.Create("--join", false, "Join a job that is already running (elastic scaling) instead of being one of the nodes it starts with");

    private static readonly Option<string?> Etcd = PsOptions.Create<string?>("--etcd", null,
        "Keep the scheduler's state in etcd (http://HOST:2379[,...]) and run as one of the job's schedulers: the first is active, the others are standbys that take over when its lease expires (nodes take --scheduler A,B,...)");
    private static readonly Option<double> EtcdLeaseS = PsOptions.Create("--etcd-lease", 2.0, "With --etcd: seconds of the active scheduler's lease; a standby takes over this long after the active one stops renewing it");

    private static async Task<EtcdSchedulerStore> StartEtcdAsync(ParseResult p, SchedulerOptions options, string endpoints, ILoggerFactory loggers, CancellationToken ct)
    {
        if (options.StateDirectory is not null)
        {
            throw new ArgumentException("--etcd and --state-dir both say where the scheduler keeps its state: give one");
        }
        if (options.Port == 0)
        {
            throw new ArgumentException("--etcd needs a fixed --port: the nodes' --scheduler list names every scheduler's address");
        }
        string me = $"{options.AdvertisedHost ?? (options.Host is "0.0.0.0" or "*" ? System.Net.Dns.GetHostName() : options.Host)}:{options.Port}";
        return await EtcdSchedulerStore.AcquireAsync(endpoints, options.JobId, me, TimeSpan.FromSeconds(p.GetValue(EtcdLeaseS)), loggers.CreateLogger("scheduler"), ct);
    }

    public static Command Scheduler()
    {
        var command = new Command("scheduler", "Run the scheduler: membership, key ranges (consistent hashing), views, barriers, shutdown")
        {
            Host, Port, Advertise, ExpectedServers, ExpectedWorkers, PsOptions.VirtualNodes, PsOptions.Replication, PsOptions.HeartbeatMs, PsOptions.HeartbeatTimeoutMs, StartupTimeoutS, PsOptions.MaxFrameMb, PsOptions.FrameTimeoutS, PsOptions.MaxConnectionsPerAddress,
            PsOptions.CheckpointDir, PsOptions.CheckpointEvery, PsOptions.Restore, PsOptions.OnWorkerFailure, PsOptions.BackupAfter, PsOptions.StateDir,
            PsOptions.MetricsPort, PsOptions.MetricsHost, PsOptions.DashboardPort, Etcd, PsOptions.JobId, EtcdLeaseS,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            PsOptions.CheckRestore(p);
            using var loggers = Logging.Create(p.GetValue(PsOptions.LogLevel)!);
            var options = new SchedulerOptions
            {
                Host = p.GetValue(Host)!,
                Port = p.GetValue(Port),
                AdvertisedHost = p.GetValue(Advertise),
                Servers = p.GetValue(ExpectedServers),
                Workers = p.GetValue(ExpectedWorkers),
                VirtualNodes = p.GetValue(PsOptions.VirtualNodes),
                Replication = p.GetValue(PsOptions.Replication),
                HeartbeatInterval = TimeSpan.FromMilliseconds(p.GetValue(PsOptions.HeartbeatMs)),
                HeartbeatTimeout = TimeSpan.FromMilliseconds(p.GetValue(PsOptions.HeartbeatTimeoutMs)),
                StartupTimeout = TimeSpan.FromSeconds(p.GetValue(StartupTimeoutS)),
                CheckpointDirectory = p.GetValue(PsOptions.CheckpointDir),
                CheckpointInterval = TimeSpan.FromSeconds(p.GetValue(PsOptions.CheckpointEvery)),
                RestoreFrom = p.GetValue(PsOptions.Restore),
                OnWorkerFailure = PsOptions.ParseWorkerFailure(p),
                StateDirectory = p.GetValue(PsOptions.StateDir),
                BackupAfter = TimeSpan.FromSeconds(Math.Max(0, p.GetValue(PsOptions.BackupAfter))),
                Transport = PsOptions.Transport(p),
                JobId = p.GetValue(PsOptions.JobId)!,
            };
            // With etcd, this scheduler is one of the job's schedulers: it waits here, a standby, until it is the active one.
            await using var etcd = p.GetValue(Etcd) is { } endpoints ? await StartEtcdAsync(p, options, endpoints, loggers, ct) : null;
            options.StateStore = etcd;
            await using var scheduler = SchedulerNode.Start(options, loggers);
            var status = new NodeStatus("scheduler") { Node = 0, Ready = true, Detail = $"listening on port {scheduler.Port}" };
            int dashboardPort = p.GetValue(PsOptions.DashboardPort);
            string httpHost = p.GetValue(PsOptions.MetricsHost)!;
            string self = $"{(options.Host is "0.0.0.0" or "*" ? "127.0.0.1" : options.Host)}:{scheduler.Port}";
            await using var http = dashboardPort >= 0
                ? await NodeHttp.StartAsync(httpHost, dashboardPort, status, routes => Dashboard.Map(routes, self, scheduler), ct)
                : await NodeHttp.StartIfAskedAsync(p, status, loggers, ct);
            if (dashboardPort >= 0)
            {
                // `pserver local` reads this line to print where the dashboard is.
                Console.Out.WriteLine($"dashboard at http://{httpHost}:{http!.Port}/");
            }
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
        var serverPort = PsOptions.Create("--port", 0, "Port to listen on for workers (0: any free port)");
        var command = new Command("server", "Run a server: holds a share of the parameters and applies updates")
        {
            PsOptions.Scheduler, Host, serverPort, Advertise, PsOptions.Json, PsOptions.MaxFrameMb, PsOptions.FrameTimeoutS, PsOptions.MaxConnectionsPerAddress, Join, PsOptions.KeyCacheMb, PsOptions.PullFilterMb, PsOptions.MaxMemoryMb,
            PsOptions.MetricsPort, PsOptions.MetricsHost, PsOptions.Trace, StartupTimeoutS, DrainOnSigterm.DrainTimeoutS, PsOptions.JobId,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            using var loggers = Logging.Create(p.GetValue(PsOptions.LogLevel)!);
            var options = new ServerOptions
            {
                Scheduler = p.GetValue(PsOptions.Scheduler)!,
                Host = p.GetValue(Host)!,
                Port = p.GetValue(serverPort),
                AdvertisedHost = p.GetValue(Advertise),
                Transport = PsOptions.Transport(p),
                Join = p.GetValue(Join),
                KeyCacheBytes = PsOptions.Bytes(p, PsOptions.KeyCacheMb),
                PullFilterBytes = PsOptions.Bytes(p, PsOptions.PullFilterMb),
                MaxMemoryBytes = PsOptions.Bytes(p, PsOptions.MaxMemoryMb),
                RegisterTimeout = TimeSpan.FromSeconds(p.GetValue(StartupTimeoutS)),
                JobId = p.GetValue(PsOptions.JobId) is { } id && id != "default" ? id : "", // not named (command line, PS_JOB_ID or --config): any job
            };
            var status = new NodeStatus("server") { Detail = $"registering with the scheduler at {options.Scheduler}" };
            using var trace = p.GetValue(PsOptions.Trace) is { } tracePath ? new ChromeTrace(tracePath, "server", -1, 0) : null;
            await using var http = await NodeHttp.StartIfAskedAsync(p, status, loggers, ct);
            await using var server = await ServerNode.StartAsync(options, loggers, ct);
            trace?.ProcessName = $"server {server.Id}";
            using var drain = DrainOnSigterm.Register(options.Scheduler, "server", () => server.Id, TimeSpan.FromSeconds(p.GetValue(DrainOnSigterm.DrainTimeoutS)), loggers.CreateLogger("server"));
            (status.Node, status.Ready, status.Detail) = (server.Id, true, $"serving on port {server.Port}");
            int code = await server.Completion.WaitAsync(ct);
            if (p.GetValue(PsOptions.Json))
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
            PsOptions.Scheduler, PsOptions.Json, PsOptions.RequestTimeoutS, StartupTimeoutS, PsOptions.MaxFrameMb, PsOptions.FrameTimeoutS, Join, PsOptions.MetricsPort, PsOptions.MetricsHost,
            PsOptions.Trace, PsOptions.TraceSteps, DrainOnSigterm.DrainTimeoutS, PsOptions.JobId,
        };
        foreach (var option in AppRegistry.AllOptions)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            using var loggers = Logging.Create(p.GetValue(PsOptions.LogLevel)!);
            var app = AppRegistry.Create(p);
            var options = new WorkerOptions
            {
                Scheduler = p.GetValue(PsOptions.Scheduler)!,
                RequestTimeout = TimeSpan.FromSeconds(p.GetValue(PsOptions.RequestTimeoutS)),
                StartupTimeout = TimeSpan.FromSeconds(p.GetValue(StartupTimeoutS)),
                Transport = PsOptions.Transport(p),
                Join = p.GetValue(Join),
                JobId = p.GetValue(PsOptions.JobId) is { } id && id != "default" ? id : "", // not named (command line, PS_JOB_ID or --config): any job
            };
            IProgress<JobProgress> progress = Environment.GetEnvironmentVariable(ProgressEvents.Variable) == "1" ? new ProgressEvents() : new ConsoleProgress();
            var status = new NodeStatus("worker");
            var (fromStep, toStep) = ChromeTrace.ParseSteps(p.GetValue(PsOptions.TraceSteps)!);
            using var trace = p.GetValue(PsOptions.Trace) is { } tracePath ? new ChromeTrace(tracePath, $"worker (pid {Environment.ProcessId})", fromStep, toStep) : null;
            await using var http = await NodeHttp.StartIfAskedAsync(p, status, loggers, ct);
            using var drain = DrainOnSigterm.Register(options.Scheduler, "worker", () => status.Node, TimeSpan.FromSeconds(p.GetValue(DrainOnSigterm.DrainTimeoutS)), loggers.CreateLogger("worker"));
            return await WorkerHost.RunAsync(options, app, loggers, Console.Out, p.GetValue(PsOptions.Json), progress, status, ct);
        }));
        return command;
    }
}
