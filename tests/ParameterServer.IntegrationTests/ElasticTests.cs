using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// Elastic scaling with real processes: servers and workers join and leave a running job while it pushes; every
/// counter is exact at the end, so no push was lost or applied twice while key ranges moved.
/// </summary>
[Collection("processes")]
public class ElasticTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

    private static async Task<JsonElement> StatusAsync(ProcessCluster job)
    {
        using var status = await Pserver.RunAsync(Limit, "status", "--scheduler", job.Address, "--json");
        Assert.True(status.ExitCode == 0, status.Describe() + "\n=== the job:\n" + job.Describe());
        return JsonDocument.Parse(status.Stdout).RootElement.Clone();
    }

    private static IEnumerable<JsonElement> Nodes(JsonElement status, string role) =>
        status.GetProperty("nodes").EnumerateArray().Where(n => n.GetProperty("role").GetString() == role && n.GetProperty("alive").GetBoolean());

    /// <summary>Polls the status until <paramref name="done"/> holds and no migration is in progress; returns the time it took.</summary>
    private static async Task<(JsonElement Status, double Ms)> WaitForAsync(ProcessCluster job, Func<JsonElement, bool> done, string what)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        JsonElement? last = null;
        while (watch.Elapsed < Limit && !job.Scheduler.Process.HasExited)
        {
            JsonElement status;
            try
            {
                status = await StatusAsync(job);
            }
            catch (Xunit.Sdk.XunitException) when (job.Scheduler.Process.HasExited)
            {
                break;
            }
            last = status;
            if (!status.GetProperty("migrating").GetBoolean() && done(status))
            {
                return (status, watch.Elapsed.TotalMilliseconds);
            }
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"waited {watch.Elapsed} for {what}; last status: {last}\n{job.Describe()}");
    }

    private static async Task<string> DrainAsync(ProcessCluster job, int node)
    {
        using var drain = await Pserver.RunAsync(Limit, "drain", "--scheduler", job.Address, "--node", node.ToString(CultureInfo.InvariantCulture));
        Assert.True(drain.ExitCode == 0, drain.Describe());
        return drain.Stdout.Trim();
    }

    private static int IdOf(Pserver node, string pattern) =>
        int.Parse(System.Text.RegularExpressions.Regex.Match(node.Stderr, pattern).Groups[1].Value, CultureInfo.InvariantCulture);

    private static JsonElement Summary(Pserver worker, ProcessCluster job)
    {
        var line = worker.StdoutLines.LastOrDefault(l => l.StartsWith("{\"app\"", StringComparison.Ordinal))
            ?? throw new Xunit.Sdk.XunitException($"no summary line\n{job.Describe()}");
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Servers_and_workers_join_and_leave_while_pushes_flow_and_every_value_is_exact(int replication)
    {
        const int units = 2000;
        string[] app = ["--app", "counter", "--json", "--keys", "2000", "--width", "2", "--work-units", units.ToString(CultureInfo.InvariantCulture), "--pause-ms", "15"];
        using var job = await ProcessCluster.StartAsync(2, 2, replication, app);
        await job.WaitUntilPushingAsync();
        var drainedServer = job.Servers[0]; // node ids are in the processes' logs
        int drainedServerId = IdOf(drainedServer, @"Server (\d+) listening");
        var leaving = job.Workers[1];
        int leavingId = IdOf(leaving, @"Worker (\d+) \(rank");

        // Add a server, then another: each takes over about 1 / (n + 1) of the key space.
        foreach (int servers in new[] { 3, 4 })
        {
            job.Servers.Add(Pserver.Start("server", "--scheduler", job.Address, "--join"));
            var (status, ms) = await WaitForAsync(job, s => Nodes(s, "server").Count() == servers, $"server {servers} to join");
            string done = status.GetProperty("migrations").EnumerateArray().Last().GetString()!;
            output.WriteLine($"join to {servers} servers: status saw it done after {ms:0} ms; scheduler: {done}");
        }
        // Drain one of the first servers: its ranges move, then it exits on its own.
        output.WriteLine(await DrainAsync(job, drainedServerId));
        await drainedServer.WaitForExitAsync(Limit);
        Assert.True(drainedServer.ExitCode == 0, job.Describe());
        await WaitForAsync(job, s => Nodes(s, "server").Count() == 3, "the drained server to leave");

        // A worker joins and takes work units; then one of the first workers is drained and hands the rest back.
        var joined = Pserver.Start(["worker", "--scheduler", job.Address, "--join", .. app]);
        job.Workers.Add(joined);
        var (_, joinMs) = await WaitForAsync(job, s => Nodes(s, "worker").Count() == 3, "the worker to join");
        output.WriteLine($"worker join: registered {joinMs:0} ms after its process started");
        output.WriteLine(await DrainAsync(job, leavingId));
        await leaving.WaitForExitAsync(Limit);
        Assert.True(!job.Workers[0].Process.HasExited, "the work ran out before every step was taken: make the run longer\n" + job.Describe());

        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
        }
        await job.Scheduler.WaitForExitAsync(Limit);
        Assert.True(job.Scheduler.ExitCode == 0, job.Describe());

        var checker = Summary(job.Workers[0], job);
        Assert.False(checker.TryGetProperty("checked", out _), job.Describe()); // the worker that checks the values
        Assert.True(checker.GetProperty("ok").GetBoolean(), job.Describe());
        Assert.Equal(0, checker.GetProperty("mismatches").GetInt32());
        Assert.Equal(units, checker.GetProperty("completions").GetInt32()); // every unit once: nobody died, nothing reassigned
        Assert.Equal(units, checker.GetProperty("grew_min").GetDouble()); // and every key grew by exactly that
        Assert.Equal(units, checker.GetProperty("grew_max").GetDouble());
        var drained = Summary(job.Workers[1], job);
        Assert.True(drained.GetProperty("drained").GetBoolean(), job.Describe());
        var late = Summary(joined, job);
        Assert.True(late.GetProperty("joined_late").GetBoolean(), job.Describe());
        Assert.True(late.GetProperty("pushes").GetInt32() > 0, "the joined worker did no work units\n" + job.Describe());
        output.WriteLine($"units: rank 0 {checker.GetProperty("pushes")}, drained rank 1 {drained.GetProperty("pushes")}, joined {late.GetProperty("pushes")}; resent slices {checker.GetProperty("resent_slices")} + {drained.GetProperty("resent_slices")} + {late.GetProperty("resent_slices")}");
    }

    [Theory]
    [InlineData(1, "async", "bounded:4")]
    [InlineData(2, "async", "bounded:4")]
    [InlineData(1, "sync", "bounded:2")]
    public async Task Pushes_in_flight_while_ranges_move_are_neither_lost_nor_applied_twice(int replication, string mode, string consistency)
    {
        // No pause and several pushes in flight per worker: the switch to a new owner always finds some on their way.
        const int rounds = 2500;
        // 16 virtual nodes per server leave the ring shares uneven enough for `pserver rebalance` to move some.
        using var job = await ProcessCluster.StartAsync(2, 2, replication, ["--virtual-nodes", "16"], "--app", "counter", "--json", "--keys", "1000", "--rounds", rounds.ToString(CultureInfo.InvariantCulture),
            "--pause-ms", "1", "--mode", mode, "--consistency", consistency);
        await job.WaitUntilPushingAsync();
        job.Servers.Add(Pserver.Start("server", "--scheduler", job.Address, "--join"));
        await WaitForAsync(job, s => Nodes(s, "server").Count() == 3, "a server to join");
        job.Servers.Add(Pserver.Start("server", "--scheduler", job.Address, "--join"));
        await WaitForAsync(job, s => Nodes(s, "server").Count() == 4, "another server to join");
        output.WriteLine(await DrainAsync(job, IdOf(job.Servers[1], @"Server (\d+) listening")));
        await WaitForAsync(job, s => Nodes(s, "server").Count() == 3, "the drained server to leave");
        using (var rebalance = await Pserver.RunAsync(Limit, "rebalance", "--scheduler", job.Address))
        {
            Assert.True(rebalance.ExitCode == 0, rebalance.Describe());
            output.WriteLine(rebalance.Stdout.Trim());
        }
        await WaitForAsync(job, _ => true, "the rebalance to finish");
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the pushes ended before every step was taken: make the run longer\n" + job.Describe());
        long resent = 0;
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
            var summary = Summary(worker, job);
            Assert.True(summary.GetProperty("ok").GetBoolean(), job.Describe());
            Assert.Equal(2 * rounds, summary.GetProperty("grew_min").GetDouble());
            Assert.Equal(2 * rounds, summary.GetProperty("grew_max").GetDouble());
            resent += summary.GetProperty("resent_slices").GetInt64();
        }
        output.WriteLine($"{mode}, replication {replication}: {resent} slices refused by old owners and sent again to new ones");
    }


    [Fact]
    public async Task Logistic_regression_on_a9a_with_a_server_added_mid_training_reaches_the_same_accuracy()
    {
        using var job = await ProcessCluster.StartAsync(2, 2, 1, "--app", "logreg", "--solver", "online", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--json");
        // Rank 0 prints a line per epoch: add the server once training is under way.
        await Task.WhenAny(job.Workers.Select(w => w.WaitForLineAsync(l => l.Contains("\"epoch\":1,", StringComparison.Ordinal), Limit)));
        job.Servers.Add(Pserver.Start("server", "--scheduler", job.Address, "--join"));
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
        }
        await job.Scheduler.WaitForExitAsync(Limit);
        Assert.Contains("Migration done", job.Scheduler.Stderr, StringComparison.Ordinal);
        var worker0 = job.Workers.First(w => w.StdoutLines.Any(l => l.Contains("test_accuracy", StringComparison.Ordinal) && !l.Contains("\"epoch\"", StringComparison.Ordinal)));
        var final = JsonDocument.Parse(worker0.StdoutLines.Last(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal) && !l.Contains("\"epoch\"", StringComparison.Ordinal))).RootElement;
        int epochsAfterJoin = worker0.StdoutLines.Count(l => l.Contains("\"epoch\"", StringComparison.Ordinal));
        output.WriteLine($"test accuracy {final.GetProperty("test_accuracy").GetDouble():0.0000}, AUC {final.GetProperty("test_auc").GetDouble():0.0000}; " +
            job.Scheduler.Stderr.Split('\n').First(l => l.Contains("Migration done", StringComparison.Ordinal)).Trim());
        Assert.Equal(10, epochsAfterJoin);
        Assert.True(final.GetProperty("test_accuracy").GetDouble() >= 0.849, job.Describe()); // the target without a join (LogRegClusterTests)
        Assert.True(final.GetProperty("test_auc").GetDouble() >= 0.900, job.Describe());
    }

    [Fact]
    public async Task Logistic_regression_with_every_traffic_option_survives_a_server_killed_mid_training()
    {
        // Key caches and pull filters live per connection: the survivors' answers to new pulls must still be whole.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--json",
            "--key-cache", "--compress", "zero+fp16", "--filter", "kkt", "--pull-filter", "sigmod:0.01");
        await Task.WhenAny(job.Workers.Select(w => w.WaitForLineAsync(l => l.Contains("\"epoch\":1,", StringComparison.Ordinal), Limit)));
        job.Servers[1].Process.Kill();
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "training ended before the kill");
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
        }
        var worker0 = job.Workers.First(w => w.StdoutLines.Any(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal) && !l.Contains("\"epoch\"", StringComparison.Ordinal)));
        var final = JsonDocument.Parse(worker0.StdoutLines.Last(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal) && !l.Contains("\"epoch\"", StringComparison.Ordinal))).RootElement;
        output.WriteLine($"test accuracy {final.GetProperty("test_accuracy").GetDouble():0.0000}, AUC {final.GetProperty("test_auc").GetDouble():0.0000}, bytes sent {final.GetProperty("bytes_sent").GetInt64()}");
        Assert.True(final.GetProperty("test_accuracy").GetDouble() >= 0.849, job.Describe());
        Assert.True(final.GetProperty("test_auc").GetDouble() >= 0.900, job.Describe());
    }

    [Fact]
    public async Task Joins_and_drains_that_cannot_work_are_refused_with_the_reason()
    {
        // Before the job starts, nothing can join.
        var waiting = Pserver.Start("scheduler", "--port", "0", "--servers", "2", "--workers", "1");
        try
        {
            string line = await waiting.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
            using var early = await Pserver.RunAsync(Limit, "server", "--scheduler", line["scheduler listening on ".Length..], "--join");
            Assert.NotEqual(0, early.ExitCode);
            Assert.Contains("has not started yet", early.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            waiting.Dispose();
        }

        using var job = await ProcessCluster.StartAsync(1, 1, 1, "--app", "counter", "--rounds", "2500", "--pause-ms", "2");
        await job.WaitUntilPushingAsync();
        async Task<string> Refusal(params string[] arguments)
        {
            using var p = await Pserver.RunAsync(Limit, arguments);
            Assert.True(p.ExitCode != 0, p.Describe());
            return p.Stderr;
        }
        Assert.Contains("not a live node", await Refusal("drain", "--scheduler", job.Address, "--node", "99"), StringComparison.Ordinal);
        int server = IdOf(job.Servers[0], @"Server (\d+) listening");
        Assert.Contains("is the last server", await Refusal("drain", "--scheduler", job.Address, "--node", server.ToString(CultureInfo.InvariantCulture)), StringComparison.Ordinal);
        int worker = IdOf(job.Workers[0], @"Worker (\d+) \(rank");
        Assert.Contains("cannot hand its data over", await Refusal("drain", "--scheduler", job.Address, "--node", worker.ToString(CultureInfo.InvariantCulture)), StringComparison.Ordinal);
        Assert.Contains("--join", await Refusal("server", "--scheduler", job.Address), StringComparison.Ordinal); // one server too many without --join
        await job.Workers[0].WaitForExitAsync(Limit);
        Assert.True(job.Workers[0].ExitCode == 0, job.Describe()); // the refusals changed nothing
    }

    [Fact]
    public async Task A_scheduler_killed_during_a_migration_finishes_it_after_its_restart()
    {
        string state = Directory.CreateTempSubdirectory("ps-elastic-state-").FullName;
        try
        {
            const int units = 600;
            using var job = await ProcessCluster.StartAsync(2, 2, 1, ["--state-dir", state],
                "--app", "counter", "--json", "--keys", "20000", "--work-units", units.ToString(CultureInfo.InvariantCulture), "--pause-ms", "15");
            string port = job.Address[(job.Address.LastIndexOf(':') + 1)..];
            await job.WaitUntilPushingAsync();
            job.Servers.Add(Pserver.Start("server", "--scheduler", job.Address, "--join"));
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (!job.Scheduler.Stderr.Contains("Migration started", StringComparison.Ordinal) && watch.Elapsed < Limit)
            {
                await Task.Delay(2);
            }
            await Task.Delay(80); // the state file records the join within about 50 ms; the copies take longer
            job.Scheduler.Process.Kill();
            await job.Scheduler.WaitForExitAsync(Limit);
            using var restarted = Pserver.Start("scheduler", "--port", port, "--servers", "2", "--workers", "2", "--state-dir", state);
            foreach (var worker in job.Workers)
            {
                await worker.WaitForExitAsync(Limit);
                Assert.True(worker.ExitCode == 0, $"{job.Describe()}\n=== restarted scheduler ===\n{restarted.Describe()}");
                var summary = Summary(worker, job);
                Assert.True(summary.GetProperty("ok").GetBoolean(), restarted.Describe());
                Assert.Equal(units, summary.GetProperty("grew_min").GetDouble());
                Assert.Equal(units, summary.GetProperty("grew_max").GetDouble());
            }
            await restarted.WaitForExitAsync(Limit);
            Assert.True(restarted.ExitCode == 0, restarted.Describe());
            bool resumed = restarted.Stderr.Contains("Resuming a migration", StringComparison.Ordinal);
            if (resumed)
            {
                Assert.True(restarted.Stderr.Contains("Migration done", StringComparison.Ordinal), restarted.Describe()); // and finished it
            }
            output.WriteLine(resumed ? "the kill landed during the migration; the restarted scheduler finished it"
                : job.Scheduler.Stderr.Contains("Migration done", StringComparison.Ordinal) ? "the migration was done before the kill landed" : "the join was not recorded before the kill");
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }
}
