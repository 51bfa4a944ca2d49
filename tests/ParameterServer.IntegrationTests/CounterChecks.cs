using System.Diagnostics;
using System.Text.Json;
using ParameterServer.Hosting.Network;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>What the gray-failure tests check of a counter job: exact values, and how long the workers' calls stalled.</summary>
internal static class CounterChecks
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

    /// <summary>The scheduler's heartbeat timeout (its default): a fault may stall a worker this long plus 1 s.</summary>
    public const double HeartbeatTimeoutMs = 800;

    /// <summary>A worker's JSON summary line.</summary>
    public static JsonElement Summary(Pserver worker)
    {
        string line = worker.StdoutLines.Single(l => l.Contains("{\"app\":\"counter\"", StringComparison.Ordinal));
        return JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]).RootElement;
    }

    /// <summary>Every worker finishes with exact counters, no call waiting longer than <paramref name="stallLimitMs"/> (null: not checked).</summary>
    public static async Task AssertExactAsync(ProcessCluster job, Stopwatch sinceFault, double? stallLimitMs, ITestOutputHelper output)
    {
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
        }
        output.WriteLine($"the workers finished {sinceFault.ElapsedMilliseconds} ms after the fault");
        foreach (var worker in job.Workers)
        {
            Assert.True(worker.ExitCode == 0, job.Describe());
            var summary = Summary(worker);
            Assert.True(summary.GetProperty("ok").GetBoolean(), job.Describe());
            Assert.Equal(0, summary.GetProperty("mismatches").GetInt32());
            double stall = summary.GetProperty("stall_ms").GetDouble();
            output.WriteLine($"a worker's calls waited at most {stall} ms");
            if (stallLimitMs is { } limit)
            {
                Assert.True(stall <= limit, $"a worker's call waited {stall} ms, over {limit} ms\n{job.Describe()}");
            }
        }
    }

    /// <summary>
    /// Two servers and two counter workers of <paramref name="units"/> work units that know every scheduler of
    /// <paramref name="schedulers"/> (A,B), each on its own lab host when <paramref name="hosts"/> (4) are given;
    /// returns once both workers have started (servers first, then workers).
    /// </summary>
    public static async Task<List<Pserver>> StartCounterNodesAsync(string schedulers, int units, IReadOnlyList<LabHost>? hosts = null)
    {
        string[] app = ["--app", "counter", "--json", "--keys", "300", "--work-units", units.ToString(System.Globalization.CultureInfo.InvariantCulture), "--pause-ms", "40"];
        Pserver Start(int i, string[] arguments) => hosts is null ? Pserver.Start(arguments) : Pserver.StartOn(hosts[i], arguments);
        string[] Listen(int i) => hosts is null ? [] : ["--host", hosts[i].Address];
        var nodes = new List<Pserver>
        {
            Start(0, ["server", "--scheduler", schedulers, .. Listen(0)]), Start(1, ["server", "--scheduler", schedulers, .. Listen(1)]),
            Start(2, ["worker", "--scheduler", schedulers, .. app]), Start(3, ["worker", "--scheduler", schedulers, .. app]),
        };
        try
        {
            foreach (var worker in nodes.Skip(2))
            {
                await worker.WaitForLineAsync(l => l.Contains("Counter on rank", StringComparison.Ordinal), Limit, stderr: true);
            }
            return nodes;
        }
        catch
        {
            nodes.ForEach(n => n.Dispose());
            throw;
        }
    }

    /// <summary>
    /// After the job moved to another scheduler (<paramref name="resumed"/>): every worker finishes with each of the
    /// <paramref name="units"/> work units counted once on every key, the new scheduler resumed the job, and every node
    /// rejoined it. Reports the workers' longest wait on a call.
    /// </summary>
    public static async Task AssertResumedExactlyAsync(IReadOnlyList<Pserver> nodes, IEnumerable<Pserver> workers, Pserver resumed, int units, ITestOutputHelper? output)
    {
        foreach (var worker in workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, $"{worker.Describe()}\n=== the scheduler that took over ===\n{resumed.Describe()}");
            var summary = JsonDocument.Parse(worker.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal))).RootElement;
            Assert.True(summary.GetProperty("ok").GetBoolean(), resumed.Describe());
            Assert.Equal(units, summary.GetProperty("grew_min").GetDouble());
            Assert.Equal(units, summary.GetProperty("grew_max").GetDouble());
            output?.WriteLine($"a worker's calls waited at most {summary.GetProperty("stall_ms").GetDouble()} ms");
        }
        Assert.Contains("Resuming the job", resumed.Stderr);
        Assert.All(nodes, n => Assert.Contains("Rejoined the scheduler", n.Stderr, StringComparison.Ordinal));
    }

    /// <summary>Sends a signal (STOP, CONT) to a process.</summary>
    public static void Signal(Process process, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", [$"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }
}
