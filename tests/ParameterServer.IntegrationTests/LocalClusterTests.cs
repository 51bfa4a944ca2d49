using System.Diagnostics;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver local` as a launcher: a failed node stops the job, nothing is left running.</summary>
[Collection("processes")]
public class LocalClusterTests
{
    /// <summary>Processes whose command line is a pserver node of the job at <paramref name="scheduler"/>.</summary>
    private static List<(int Pid, string[] Args)> Nodes(string scheduler)
    {
        var found = new List<(int, string[])>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
            {
                continue;
            }
            try
            {
                var args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (args.Any(a => a.EndsWith("pserver.dll", StringComparison.Ordinal)) && args.Contains(scheduler))
                {
                    found.Add((pid, args));
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return found;
    }

    [Fact]
    public async Task A_killed_worker_stops_the_job_with_a_non_zero_exit_and_no_orphans()
    {
        Assert.True(OperatingSystem.IsLinux(), "this test reads /proc");
        using var local = Pserver.Start("local", "--servers", "2", "--workers", "2", "--app", "counter", "--rounds", "100000", "--pause-ms", "20");
        string line = await local.WaitForLineAsync(l => l.Contains("scheduler listening on ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        string address = line[(line.IndexOf("listening on ", StringComparison.Ordinal) + "listening on ".Length)..];
        await WaitUntil(() => local.Stderr.Contains("Counter on rank 1", StringComparison.Ordinal) && local.Stderr.Contains("Counter on rank 0", StringComparison.Ordinal), TimeSpan.FromSeconds(60), local);
        var nodes = Nodes(address);
        Assert.Equal(4, nodes.Count); // 2 servers + 2 workers (the scheduler was given port 0, not the address)
        var worker = nodes.First(n => n.Args.Contains("worker"));
        Process.GetProcessById(worker.Pid).Kill();

        await local.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, local.ExitCode);
        Assert.Contains("exited with code 137", local.Stderr);
        Assert.Contains("stopped the other nodes", local.Stderr);
        await WaitUntil(() => Nodes(address).Count == 0, TimeSpan.FromSeconds(10), local);
    }

    private static async Task WaitUntil(Func<bool> condition, TimeSpan timeout, Pserver context)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"condition not met within {timeout}; {context.Describe()}");
            }
            await Task.Delay(50);
        }
    }
}
