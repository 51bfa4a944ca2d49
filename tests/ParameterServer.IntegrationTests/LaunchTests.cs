using System.Globalization;
using System.Text.Json;
using ParameterServer.Cli;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver launch`: the role from ps-lite's DMLC_* or Slurm's SLURM_* variables.</summary>
[Collection("processes")]
public sealed class LaunchTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_job_started_as_ps_lite_starts_it_runs_with_every_role_from_DMLC_variables()
    {
        string port = Ports.Free().ToString(CultureInfo.InvariantCulture);
        var nodes = new List<Pserver>();
        try
        {
            Pserver Start(string role) => Pserver.StartWith(new Dictionary<string, string>
            {
                ["DMLC_ROLE"] = role, ["DMLC_PS_ROOT_URI"] = "127.0.0.1", ["DMLC_PS_ROOT_PORT"] = port,
                ["DMLC_NUM_SERVER"] = "2", ["DMLC_NUM_WORKER"] = "2", ["DMLC_NODE_HOST"] = "127.0.0.1",
            }, "launch", "--app", "counter", "--json", "--rounds", "20");
            // Any order: the workers and a server first, as pods may start.
            nodes.AddRange([Start("worker"), Start("server"), Start("worker"), Start("scheduler"), Start("server")]);
            foreach (var worker in nodes.Where((_, i) => i is 0 or 2))
            {
                await worker.WaitForExitAsync(Limit);
                Assert.True(worker.ExitCode == 0, worker.Describe());
                Assert.Contains($"pserver launch: ps-lite mode: pserver worker --scheduler 127.0.0.1:{port} --app counter", worker.Stderr, StringComparison.Ordinal);
                using var summary = JsonDocument.Parse(worker.StdoutLines.Last(l => l.StartsWith("{\"app\"", StringComparison.Ordinal)));
                Assert.True(summary.RootElement.GetProperty("ok").GetBoolean(), worker.Describe());
            }
        }
        finally
        {
            nodes.ForEach(n => n.Dispose());
        }
    }

    [Theory]
    [InlineData("0", "scheduler --host 0.0.0.0 --advertise c7 --port 9700 --servers 2 --workers 3 --replication 2")]
    [InlineData("1", "server --scheduler c7:9700 --host 0.0.0.0 --advertise c9 --max-memory-mb 512")]
    [InlineData("2", "server --scheduler c7:9700 --host 0.0.0.0 --advertise c9 --max-memory-mb 512")]
    [InlineData("3", "worker --scheduler c7:9700 --app logreg --data /d")]
    [InlineData("5", "worker --scheduler c7:9700 --app logreg --data /d")]
    public void Srun_tasks_are_the_scheduler_then_the_servers_then_the_workers(string rank, string expected)
    {
        var env = new Dictionary<string, string> { ["SLURM_PROCID"] = rank, ["SLURM_NTASKS"] = "6", ["SLURM_JOB_NODELIST"] = "c[7-8],gpu1", ["SLURMD_NODENAME"] = "c9" };
        var (mode, arguments) = LaunchCommand.Resolve(env.GetValueOrDefault, 2, 9700, ["--app", "logreg", "--data", "/d"], ["--replication", "2"], ["--max-memory-mb", "512"]);
        Assert.Equal(expected, string.Join(' ', arguments));
        Assert.Equal($"Slurm mode, task {rank} of 6", mode);
    }

    [Theory]
    [InlineData("node[01-03,07],gpu5", "node01 node02 node03 node07 gpu5")]
    [InlineData("a,b", "a b")]
    [InlineData("rack1-n[8-10]", "rack1-n8 rack1-n9 rack1-n10")]
    [InlineData("n[1-2]x", "n1x n2x")]
    public void Slurm_host_lists_expand_in_order(string hostlist, string expected) =>
        Assert.Equal(expected, string.Join(' ', LaunchCommand.ExpandHostlist(hostlist)));

    [Theory]
    [InlineData("DMLC_ROLE=server", "DMLC_PS_ROOT_URI is not set")]
    [InlineData("DMLC_ROLE=boss,DMLC_PS_ROOT_URI=h,DMLC_PS_ROOT_PORT=1", "DMLC_ROLE=boss: expected scheduler, server or worker")]
    [InlineData("DMLC_ROLE=scheduler,DMLC_PS_ROOT_URI=h,DMLC_PS_ROOT_PORT=x", "DMLC_PS_ROOT_PORT=x: expected a whole number")]
    [InlineData("SLURM_PROCID=0,SLURM_NTASKS=2,SLURM_JOB_NODELIST=a", "SLURM_NTASKS=2: expected a whole number of at least 3")]
    [InlineData("SLURM_PROCID=0,SLURM_NTASKS=3,SLURM_JOB_NODELIST=a[3-1]", "cannot read the host list 'a[3-1]'")]
    [InlineData("", "neither DMLC_ROLE (ps-lite's launchers) nor SLURM_PROCID (srun) is set")]
    public void A_launcher_environment_that_is_incomplete_or_wrong_is_refused_naming_the_variable(string variables, string message)
    {
        var env = variables.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(v => v.Split('=')).ToDictionary(v => v[0], v => v[1]);
        var ex = Assert.Throws<ArgumentException>(() => LaunchCommand.Resolve(env.GetValueOrDefault, 1, 9700, [], [], []));
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }
}
