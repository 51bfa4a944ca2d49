using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>The scheduler killed (SIGKILL) mid-job and started again on its port with its state directory: the job completes.</summary>
[Collection("processes")]
public sealed class SchedulerRestartTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);
    private readonly string _state = Directory.CreateTempSubdirectory("ps-state-").FullName;

    public void Dispose() => Directory.Delete(_state, recursive: true);

    [Fact]
    public async Task A_restarted_scheduler_resumes_the_job_and_every_unit_is_counted_once()
    {
        using var job = await ProcessCluster.StartAsync(2, 2, 2, ["--state-dir", _state],
            "--app", "counter", "--json", "--keys", "300", "--work-units", "120", "--pause-ms", "40");
        string port = job.Address[(job.Address.LastIndexOf(':') + 1)..];
        await job.WaitUntilPushingAsync();
        await Task.Delay(800);
        job.Scheduler.Process.Kill();
        await job.Scheduler.WaitForExitAsync(Limit);
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the job ended before the scheduler was killed: make it longer");
        await Task.Delay(300);
        using var restarted = Pserver.Start("scheduler", "--port", port, "--servers", "2", "--workers", "2", "--state-dir", _state);
        foreach (var worker in job.Workers)
        {
            await worker.WaitForExitAsync(Limit);
            Assert.True(worker.ExitCode == 0, $"{job.Describe()}\n=== restarted scheduler ===\n{restarted.Describe()}");
            var summary = JsonDocument.Parse(worker.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal))).RootElement;
            Assert.True(summary.GetProperty("ok").GetBoolean(), restarted.Describe());
            Assert.Equal(120, summary.GetProperty("completions").GetInt32());
            Assert.Equal(120, summary.GetProperty("grew_min").GetDouble());
            Assert.Equal(120, summary.GetProperty("grew_max").GetDouble());
        }
        await restarted.WaitForExitAsync(Limit);
        Assert.True(restarted.ExitCode == 0, restarted.Describe());
        Assert.Contains("Resuming the job", restarted.Stderr);
        Assert.Equal(2, job.Workers.Count(w => w.Stderr.Contains("Rejoined the scheduler", StringComparison.Ordinal)));
    }
}
