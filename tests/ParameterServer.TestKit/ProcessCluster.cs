using ParameterServer.Hosting.Network;

namespace ParameterServer.TestKit;

/// <summary>
/// A job of real `pserver` processes started by hand (scheduler on a free port, servers, workers), so that a test can
/// kill, restart, drain or add any of them. Disposing kills every process still running.
/// </summary>
internal sealed class ProcessCluster : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

    public required Pserver Scheduler { get; init; }

    public required string Address { get; init; }

    public List<Pserver> Servers { get; } = new();

    public List<Pserver> Workers { get; } = new();

    public static Task<ProcessCluster> StartAsync(int servers, int workers, int replication, params string[] workerArguments) =>
        StartAsync(servers, workers, replication, [], workerArguments);

    public static Task<ProcessCluster> StartAsync(int servers, int workers, int replication, string[] schedulerArguments, params string[] workerArguments) =>
        StartAsync(servers, workers, replication, schedulerArguments, workerArguments, lab: null);

    /// <summary>
    /// Starts the job; with a <paramref name="lab"/> each process runs on a host of its own, in the order scheduler,
    /// servers, workers (the lab needs 1 + servers + workers hosts), and listens on that host's address.
    /// </summary>
    public static async Task<ProcessCluster> StartAsync(int servers, int workers, int replication, string[] schedulerArguments, string[] workerArguments, NetworkLab? lab)
    {
        if (lab is not null && lab.Hosts.Count < 1 + servers + workers)
        {
            throw new ArgumentException($"the lab has {lab.Hosts.Count} hosts; the job needs {1 + servers + workers}");
        }
        Pserver Start(int host, string[] arguments) => lab is null ? Pserver.Start(arguments) : Pserver.StartOn(lab.Hosts[host], arguments);
        string[] Listen(int host) => lab is null ? [] : ["--host", lab.Hosts[host].Address];
        var scheduler = Start(0, ["scheduler", "--port", "0", "--servers", servers.ToString(), "--workers", workers.ToString(),
            "--replication", replication.ToString(), .. Listen(0), .. schedulerArguments]);
        string line = await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
        var job = new ProcessCluster { Scheduler = scheduler, Address = line["scheduler listening on ".Length..] };
        for (int i = 0; i < servers; i++)
        {
            job.Servers.Add(Start(1 + i, ["server", "--scheduler", job.Address, .. Listen(1 + i)]));
        }
        for (int i = 0; i < workers; i++)
        {
            job.Workers.Add(Start(1 + servers + i, ["worker", "--scheduler", job.Address, .. workerArguments]));
        }
        return job;
    }

    /// <summary>Waits until every worker has started its pushes (the app logs its plan first).</summary>
    public async Task WaitUntilPushingAsync()
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!Workers.All(w => w.Stderr.Contains("Counter on rank", StringComparison.Ordinal) || w.Stdout.Contains("Counter on rank", StringComparison.Ordinal)))
        {
            if (DateTime.UtcNow > deadline || Workers.Any(w => w.Process.HasExited))
            {
                throw new Xunit.Sdk.XunitException($"the workers did not start pushing:\n{string.Join("\n---\n", Workers.Select(w => w.Describe()))}");
            }
            await Task.Delay(10);
        }
    }

    /// <summary>The first worker for which <paramref name="match"/> holds (say, one that printed a line), polled until the limit.</summary>
    public async Task<Pserver> FirstWorkerAsync(Func<Pserver, bool> match)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (DateTime.UtcNow < deadline)
        {
            if (Workers.FirstOrDefault(match) is { } worker)
            {
                return worker;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("no worker matched in time:\n" + Describe());
    }

    public string Describe() => string.Join("\n======\n", new[] { Scheduler }.Concat(Servers).Concat(Workers).Select(p => p.Describe()));

    public void Dispose()
    {
        foreach (var p in Workers.Concat(Servers).Append(Scheduler))
        {
            p.Dispose();
        }
    }
}
