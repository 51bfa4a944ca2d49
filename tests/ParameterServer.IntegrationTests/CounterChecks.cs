using System.Diagnostics;
using System.Text.Json;
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

    /// <summary>Sends a signal (STOP, CONT) to a process.</summary>
    public static void Signal(Process process, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", [$"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }
}
