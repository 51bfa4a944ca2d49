using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench chaos`: a soak test. A local job (the counter, its rounds handed out as work units) runs while a
/// random process is killed with SIGKILL every few seconds: the scheduler (restarted on its port with its state
/// directory), a server (while more than --replication remain; a replacement joins the running job), or a worker
/// (while more than one remains). Now and then one is stopped instead (SIGSTOP) for 1 to 4 s and resumed: a gray
/// failure; a stopped server or worker is declared dead and fenced off, a stopped scheduler stalls the job. At the end
/// every counter must have grown by exactly the units done (plus at most the units dead workers held).
/// </summary>
public static class ChaosBench
{
    /// <summary>--duration.</summary>
    public static readonly Option<int> Duration = PsOptions.Create("--duration", 60, "Seconds of killing (the job is sized to run about this long)");
    /// <summary>--kill-every.</summary>
    public static readonly Option<double> KillEvery = PsOptions.Create("--kill-every", 5.0, "Seconds between kills");
    /// <summary>--seed.</summary>
    public static readonly Option<int> Seed = PsOptions.Create("--seed", 0, "Random seed for the victims (0: a new one each run)");
    /// <summary>--victims.</summary>
    public static readonly Option<string> Victims = PsOptions.Create("--victims", "scheduler,server,worker", "Kinds of node that may be killed or stopped, comma-separated (e.g. server, to soak replication)");
    private const int PauseMs = 20;
    private static readonly string[] Kinds = ["scheduler", "server", "worker"];

    /// <summary>`pserver bench chaos`: runs the counter while killing random nodes; exit code 1 when a counter is off.</summary>
    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        int servers = p.GetValue(LocalCluster.Servers);
        int workers = p.GetValue(LocalCluster.Workers);
        int replication = p.GetValue(PsOptions.Replication) is > 0 and var r ? r : Math.Min(2, servers);
        int duration = p.GetValue(Duration);
        double killEvery = p.GetValue(KillEvery);
        bool json = p.GetValue(PsOptions.Json);
        if (servers < 2 || replication < 2 || replication > servers || workers < 1 || duration < 1 || killEvery < 0.5)
        {
            throw new ArgumentException("bench chaos needs --servers >= 2, --replication in [2, servers], --workers >= 1, --duration >= 1 and --kill-every >= 0.5");
        }
        var victims = (p.GetValue(Victims) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();
        if (victims.Count == 0 || victims.Any(v => !Kinds.Contains(v)))
        {
            throw new ArgumentException($"--victims takes a comma-separated list of {string.Join(", ", Kinds)} (got '{p.GetValue(Victims)}')");
        }
        int seed = p.GetValue(Seed) is not 0 and var s ? s : Environment.TickCount;
        var random = new Random(seed);
        string state = Directory.CreateTempSubdirectory("pserver-chaos-").FullName;
        int units = Math.Max(10, (int)(duration * 1000.0 / PauseMs * workers * 0.7)); // about --duration with every worker alive
        using var children = new ProcessGroup();
        try
        {
            string[] schedulerArguments = ["--servers", LocalJob.Inv(servers), "--workers", LocalJob.Inv(workers), "--replication", LocalJob.Inv(replication),
                "--state-dir", state, "--log-level", "warning"];
            string address = await LocalJob.StartSchedulerAsync(children, servers, workers, ["--replication", LocalJob.Inv(replication), "--state-dir", state], "warning", echo: false, ct);
            string port = address[(address.LastIndexOf(':') + 1)..];
            var scheduler = children.Last;
            var serverProcesses = Enumerable.Range(0, servers).Select(i => children.Start($"server {i}", ["server", "--scheduler", address, "--log-level", "warning"], _ => false)).ToList();
            var results = new List<string>();
            var workerProcesses = new List<ProcessGroup.Child>();
            void StartWorker(bool join) => workerProcesses.Add(children.Start($"worker {workerProcesses.Count}",
                ["worker", "--scheduler", address, "--log-level", "warning", "--app", "counter", "--json", "--keys", "2000", "--work-units", LocalJob.Inv(units), "--pause-ms", LocalJob.Inv(PauseMs), .. (join ? new[] { "--join" } : [])],
                line =>
                {
                    if (line.StartsWith("{\"app\"", StringComparison.Ordinal))
                    {
                        lock (results)
                        {
                            results.Add(line);
                        }
                    }
                    return false;
                }));
            for (int i = 0; i < workers; i++)
            {
                StartWorker(join: false);
            }
            // The workers the job started with check the counters at the end (one that joins later cannot know the
            // starting values): one of them always stays up.
            var originals = workerProcesses.Select(w => w.Process).ToHashSet();
            Console.Error.WriteLine($"chaos: {servers} servers (replication {replication}), {workers} workers, {units} work units; a kill every {killEvery:0.#} s for {duration} s among {string.Join(", ", Kinds.Where(victims.Contains))} (seed {seed})");

            var kills = new Dictionary<string, int> { ["scheduler"] = 0, ["server"] = 0, ["worker"] = 0 };
            var stops = new Dictionary<string, int> { ["scheduler"] = 0, ["server"] = 0, ["worker"] = 0 };
            var stopped = new HashSet<System.Diagnostics.Process>(); // until resumed (they are not counted as live meanwhile)
            var resumes = new List<Task>();
            int joins = 0;
            var watch = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(killEvery, 2)), ct); // let the job start
            while (watch.Elapsed.TotalSeconds < duration && workerProcesses.Any(w => !w.Process.HasExited))
            {
                List<ProcessGroup.Child> liveServers;
                List<ProcessGroup.Child> liveWorkers;
                lock (stopped)
                {
                    liveServers = serverProcesses.Where(c => !c.Process.HasExited && !stopped.Contains(c.Process)).ToList();
                    liveWorkers = workerProcesses.Where(c => !c.Process.HasExited && !stopped.Contains(c.Process)).ToList();
                }
                bool? copiesComplete = await CopiesCompleteAsync(address, ct); // null: the scheduler does not answer (restarting, stopped)
                if (liveWorkers.Count < workers && copiesComplete is not null)
                {
                    // A replacement for a killed worker joins and helps with the units (elastic scaling).
                    StartWorker(join: true);
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"chaos: {watch.Elapsed.TotalSeconds:0.0} s: a new worker joins"));
                }
                // Only workers whose loss leaves an original worker up may go down.
                var expendable = liveWorkers.Where(w => !originals.Contains(w.Process) || liveWorkers.Count(o => originals.Contains(o.Process)) > 1).ToList();
                bool joined = liveServers.Count < servers && copiesComplete is not null;
                if (joined)
                {
                    // A replacement for a killed server joins the running job (elastic scaling).
                    serverProcesses.Add(children.Start($"server {serverProcesses.Count}", ["server", "--scheduler", address, "--join", "--log-level", "warning"], _ => false));
                    joins++;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"chaos: {watch.Elapsed.TotalSeconds:0.0} s: a new server joins"));
                }
                var kinds = new List<string> { "scheduler" };
                // A server goes down only while every range has all its copies, none is stopped and none is joining: a
                // second loss before the copies lost with the first are restored would lose parameters, which
                // replication does not promise to survive.
                if (liveServers.Count > replication && stopped.Count == 0 && !joined && copiesComplete == true)
                {
                    kinds.Add("server");
                }
                if (liveWorkers.Count > 1 && expendable.Count > 0)
                {
                    kinds.Add("worker");
                }
                kinds.RemoveAll(k => !victims.Contains(k));
                if (kinds.Count == 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(killEvery, 1)), ct); // no allowed victim may go down now
                    continue;
                }
                string kind = kinds[random.Next(kinds.Count)];
                bool stopInstead = random.Next(4) == 0 && stopped.Count == 0;
                if (stopInstead)
                {
                    var victim = kind switch
                    {
                        "scheduler" => scheduler,
                        "server" => liveServers[random.Next(liveServers.Count)],
                        _ => expendable[random.Next(expendable.Count)],
                    };
                    var pause = TimeSpan.FromMilliseconds(random.Next(1000, 4000));
                    lock (stopped)
                    {
                        stopped.Add(victim.Process);
                    }
                    Signal(victim.Process, "STOP");
                    resumes.Add(Task.Run(async () =>
                    {
                        await Task.Delay(pause, CancellationToken.None);
                        Signal(victim.Process, "CONT");
                        lock (stopped)
                        {
                            stopped.Remove(victim.Process);
                        }
                    }, CancellationToken.None));
                    stops[kind]++;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"chaos: {watch.Elapsed.TotalSeconds:0.0} s: stopped the {kind} for {pause.TotalSeconds:0.0} s"));
                    await Task.Delay(TimeSpan.FromSeconds(killEvery), ct);
                    continue;
                }
                switch (kind)
                {
                    case "scheduler":
                        scheduler.Process.Kill();
                        await scheduler.Process.WaitForExitAsync(ct);
                        await Task.Delay(200, ct);
                        scheduler = children.Start("scheduler", ["scheduler", "--port", port, .. schedulerArguments], _ => false);
                        break;
                    case "server":
                        liveServers[random.Next(liveServers.Count)].Process.Kill();
                        break;
                    default:
                        expendable[random.Next(expendable.Count)].Process.Kill();
                        break;
                }
                kills[kind]++;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"chaos: {watch.Elapsed.TotalSeconds:0.0} s: killed the {kind}"));
                await Task.Delay(TimeSpan.FromSeconds(killEvery), ct);
            }
            await Task.WhenAll(resumes);
            if (!await WaitWhileProgressingAsync(workerProcesses, Path.Combine(state, "scheduler-state.json"), address, ct))
            {
                return ExitCodes.Failed;
            }
            await children.DrainAsync();
            var summaries = results.Select(l => JsonDocument.Parse(l).RootElement).ToList();
            // Workers that joined late report without checking: at least one that started the job must have checked.
            var checkedSummaries = summaries.Where(x => !x.TryGetProperty("checked", out var c) || c.GetBoolean()).ToList();
            bool ok = checkedSummaries.Count > 0 && summaries.All(x => x.GetProperty("ok").GetBoolean())
                && summaries.Count == workerProcesses.Count(w => w.Process.ExitCode == 0);
            int completions = summaries.Count > 0 ? summaries.Max(x => x.GetProperty("completions").GetInt32()) : 0;
            int reassigned = checkedSummaries.Count > 0 ? checkedSummaries.Max(x => x.GetProperty("reassigned").GetInt32()) : 0;
            double[] failovers = checkedSummaries.Select(x => x.GetProperty("failover_ms").GetDouble()).Where(ms => ms >= 0).ToArray();
            if (json)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    bench = "chaos",
                    ok,
                    seconds = Math.Round(watch.Elapsed.TotalSeconds, 1),
                    kills,
                    stops,
                    server_joins = joins,
                    units,
                    completions,
                    reassigned,
                    finished_workers = summaries.Count,
                    worker_joins = workerProcesses.Count - workers,
                    failover_ms_max = failovers.Length > 0 ? failovers.Max() : -1,
                    seed,
                }));
            }
            else
            {
                Console.Out.WriteLine(ok
                    ? $"chaos OK: {kills.Values.Sum()} kills (scheduler {kills["scheduler"]}, servers {kills["server"]}, workers {kills["worker"]}), {stops.Values.Sum()} stops (scheduler {stops["scheduler"]}, servers {stops["server"]}, workers {stops["worker"]}) and {joins} server joins in {watch.Elapsed.TotalSeconds:0} s; all {units} units done ({completions} completions, {reassigned} reassigned), every counter exact"
                    : $"chaos FAILED: {summaries.Count} workers reported, {summaries.Count(x => !x.GetProperty("ok").GetBoolean())} with wrong counters (seed {seed})");
            }
            return ok ? ExitCodes.Ok : ExitCodes.Failed;
        }
        finally
        {
            children.Kill();
            Directory.Delete(state, recursive: true);
        }
    }

    /// <summary>How long the job may go without finishing a work unit before the soak calls it a hang.</summary>
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Waits for the workers while the job makes progress: the scheduler rewrites its state file whenever a unit is
    /// claimed or done. A job that makes none for <see cref="HangAfter"/> is a hang: says so with the scheduler's view
    /// of the job (the workers log what their calls wait on) and returns false.
    /// </summary>
    private static async Task<bool> WaitWhileProgressingAsync(List<ProcessGroup.Child> workers, string stateFile, string scheduler, CancellationToken ct)
    {
        while (workers.Any(w => !w.Process.HasExited))
        {
            var idle = DateTime.UtcNow - (File.Exists(stateFile) ? File.GetLastWriteTimeUtc(stateFile) : DateTime.UtcNow);
            if (idle > HangAfter)
            {
                string status;
                try
                {
                    status = string.Join(Environment.NewLine, (await ParameterServer.Client.ClusterAdmin.StatusAsync(scheduler, TimeSpan.FromSeconds(5), ct)).ToText());
                }
                catch (PsException ex)
                {
                    status = $"the scheduler does not answer: {ex.Message}";
                }
                Console.Error.WriteLine($"chaos: HANG: no work unit claimed or done for {idle.TotalSeconds:0} s while {workers.Count(w => !w.Process.HasExited)} workers run. The scheduler's status:{Environment.NewLine}{status}");
                return false;
            }
            await Task.Delay(1000, ct);
        }
        return true;
    }

    /// <summary>Whether the scheduler says every range has all its copies; null when it does not answer.</summary>
    private static async Task<bool?> CopiesCompleteAsync(string scheduler, CancellationToken ct)
    {
        try
        {
            var status = await ParameterServer.Client.ClusterAdmin.StatusAsync(scheduler, TimeSpan.FromSeconds(2), ct);
            var replication = JsonDocument.Parse(status.ToJson()).RootElement.GetProperty("replication");
            return replication.GetProperty("healthy").GetBoolean();
        }
        catch (PsException)
        {
            return null;
        }
    }

    private static void Signal(System.Diagnostics.Process process, string signal)
    {
        using var kill = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("kill", [$"-{signal}", process.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
    }
}
