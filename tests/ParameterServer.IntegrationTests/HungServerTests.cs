using System.Diagnostics;
using System.Text.Json;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>Gray failures: a server that stops without closing its sockets (SIGSTOP) must not stall the job.</summary>
[Collection("processes")]
public sealed class HungServerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);

    private static void Signal(Process process, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", [$"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    [Fact]
    public async Task A_stopped_replica_does_not_hold_the_live_primaries_acknowledgements()
    {
        // Large rows pushed without pause: forwards to the stopped server are in flight (and its socket buffers fill)
        // when it stops. Once the scheduler declares it dead, the other copies acknowledge without it.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, "--app", "counter", "--json", "--keys", "2000", "--width", "64", "--rounds", "1500");
        await job.WaitUntilPushingAsync();
        await Task.Delay(300);
        var victim = job.Servers[1];
        var stopped = Stopwatch.StartNew();
        Signal(victim.Process, "STOP");
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the pushes ended before the server was stopped: make the run longer");
        try
        {
            foreach (var worker in job.Workers)
            {
                await worker.WaitForExitAsync(Limit);
            }
            output.WriteLine($"the workers finished {stopped.ElapsedMilliseconds} ms after the server was stopped");
            foreach (var worker in job.Workers)
            {
                Assert.True(worker.ExitCode == 0, job.Describe());
                string line = worker.StdoutLines.Single(l => l.Contains("{\"app\":\"counter\"", StringComparison.Ordinal));
                var summary = JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]).RootElement;
                Assert.True(summary.GetProperty("ok").GetBoolean(), job.Describe());
                Assert.Equal(0, summary.GetProperty("mismatches").GetInt32());
            }
            Assert.Contains("is dead", job.Scheduler.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            victim.Process.Kill(); // a stopped process still takes SIGKILL
        }
    }
}
