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

    [Fact]
    public async Task Nodes_given_a_list_of_schedulers_follow_the_job_to_the_one_that_takes_over()
    {
        // Nodes take --scheduler A,B; B starts on another port from A's state only after A is killed (a standby on
        // shared state): the nodes find it, rejoin, and the job completes with every unit counted once.
        string a = $"127.0.0.1:{Ports.Free()}";
        int portB = Ports.Free();
        string both = $"{a},127.0.0.1:{portB}";
        using var first = Pserver.Start("scheduler", "--port", a.Split(':')[1], "--servers", "2", "--workers", "2", "--replication", "2", "--state-dir", _state);
        var nodes = await CounterChecks.StartCounterNodesAsync(both, units: 120);
        try
        {
            var workers = nodes.Skip(2).ToList();
            await Task.Delay(800);
            first.Process.Kill();
            await first.WaitForExitAsync(Limit);
            using var second = Pserver.Start("scheduler", "--port", portB.ToString(System.Globalization.CultureInfo.InvariantCulture), "--servers", "2", "--workers", "2", "--replication", "2", "--state-dir", _state);
            await CounterChecks.AssertResumedExactlyAsync(nodes, workers, second, units: 120, output: null);
        }
        finally
        {
            nodes.ForEach(n => n.Dispose());
        }
    }

    [Fact]
    public async Task A_second_scheduler_on_a_state_directory_in_use_is_refused()
    {
        using var first = Pserver.Start("scheduler", "--port", "0", "--state-dir", _state);
        await first.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
        using var second = await Pserver.RunAsync(Limit, "scheduler", "--port", "0", "--state-dir", _state);
        Assert.NotEqual(0, second.ExitCode);
        Assert.Contains($"another scheduler is running on the state directory {_state}", second.Stderr, StringComparison.Ordinal);
    }
}
