using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>A worker killed (SIGKILL) mid-job: its unfinished work units are reassigned or dropped, by policy.</summary>
[Collection("processes")]
public class WorkerFailureTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);

    [Theory]
    [InlineData("reassign", 40, 1, 0)]
    [InlineData("drop", 39, 0, 1)]
    public async Task A_dead_workers_unit_is_redone_or_dropped_and_the_totals_are_exact(string policy, int completions, int reassigned, int dropped)
    {
        // Rank 1 "computes" for 20 s on its first unit: it is killed while holding it, before pushing anything.
        using var job = await ProcessCluster.StartAsync(2, 3, 2, ["--on-worker-failure", policy],
            "--app", "counter", "--json", "--keys", "500", "--work-units", "40", "--pause-ms", "20000", "--slow-rank", "1");
        await job.WaitUntilPushingAsync();
        var victim = job.Workers.Single(w => w.Stderr.Contains("Counter on rank 1", StringComparison.Ordinal));
        var survivors = job.Workers.Where(w => w != victim).ToList();
        await Task.Delay(1500); // the others take every other unit meanwhile and then wait for the victim's
        victim.Process.Kill();
        foreach (var worker in survivors)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, job.Describe());
            var line = worker.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal));
            var summary = JsonDocument.Parse(line).RootElement;
            Assert.True(summary.GetProperty("ok").GetBoolean(), job.Describe());
            Assert.Equal(completions, summary.GetProperty("completions").GetInt32());
            Assert.Equal(reassigned, summary.GetProperty("reassigned").GetInt32());
            Assert.Equal(dropped, summary.GetProperty("dropped").GetInt32());
            // The victim died before pushing: every value grew by exactly the units completed.
            Assert.Equal(completions, summary.GetProperty("grew_min").GetDouble());
            Assert.Equal(completions, summary.GetProperty("grew_max").GetDouble());
        }
        Assert.Equal(40 - dropped, survivors.Sum(w => JsonDocument.Parse(w.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal))).RootElement.GetProperty("pushes").GetInt32()));
        Assert.Contains(policy == "reassign" ? "given to the other workers" : "dropped", job.Scheduler.Stderr);
    }
}
