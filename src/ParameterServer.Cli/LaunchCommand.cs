using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>
/// `pserver launch`: one command for every process of a job started by a launcher that tells each process its role
/// through the environment: ps-lite's (`DMLC_ROLE`, `DMLC_PS_ROOT_URI`, `DMLC_PS_ROOT_PORT`, `DMLC_NUM_SERVER`,
/// `DMLC_NUM_WORKER`) or Slurm's `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_JOB_NODELIST`: task 0 is the
/// scheduler, the next --servers tasks servers, the rest workers). It prints the command it runs, then runs it.
/// </summary>
internal static partial class LaunchCommand
{
    public static Command Create(Func<string[], Task<int>> run)
    {
        var servers = PsOptions.Create("--servers", 1, "Slurm: how many of the tasks after the scheduler (task 0) are servers; the rest are workers");
        var port = PsOptions.Create("--port", 9700, "Slurm: the scheduler's port on the job's first host");
        var schedulerArgs = PsOptions.Create("--scheduler-args", "", "More arguments for the scheduler, as one string (e.g. \"--replication 2\")");
        var serverArgs = PsOptions.Create("--server-args", "", "More arguments for each server, as one string (e.g. \"--max-memory-mb 4096\")");
        var command = new Command("launch", "Run this process's role in a job whose launcher sets ps-lite's DMLC_* or Slurm's SLURM_* variables; the other arguments go to the workers (the app and its options)")
        {
            servers, port, schedulerArgs, serverArgs,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            var (mode, arguments) = Resolve(Environment.GetEnvironmentVariable, p.GetValue(servers), p.GetValue(port),
                p.UnmatchedTokens, Split(p.GetValue(schedulerArgs)!), Split(p.GetValue(serverArgs)!));
            await Console.Error.WriteLineAsync($"pserver launch: {mode}: pserver {string.Join(' ', arguments)}").ConfigureAwait(false);
            return await run(arguments).ConfigureAwait(false);
        }));
        return command;
    }

    private static string[] Split(string arguments) => arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The pserver command line for this process, from its launcher's environment; throws ArgumentException naming what is missing.</summary>
    internal static (string Mode, string[] Arguments) Resolve(Func<string, string?> env, int servers, int port, IReadOnlyList<string> workerArguments,
        string[] schedulerArguments, string[] serverArguments)
    {
        string Need(string name) => env(name) is { Length: > 0 } value ? value : throw new ArgumentException($"pserver launch: {name} is not set (ps-lite sets DMLC_ROLE, DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER and DMLC_NUM_WORKER for every process)");
        int Count(string name, int min)
        {
            string value = Need(name);
            return int.TryParse(value, CultureInfo.InvariantCulture, out int n) && n >= min ? n : throw new ArgumentException($"pserver launch: {name}={value}: expected a whole number of at least {min}");
        }
        if (env("DMLC_ROLE") is { Length: > 0 } role)
        {
            string uri = Need("DMLC_PS_ROOT_URI");
            int rootPort = Count("DMLC_PS_ROOT_PORT", 1);
            string scheduler = $"{uri}:{rootPort}";
            string self = env("DMLC_NODE_HOST") is { Length: > 0 } host ? host : System.Net.Dns.GetHostName();
            return role switch
            {
                "scheduler" => ("ps-lite mode", ["scheduler", "--host", "0.0.0.0", "--advertise", uri, "--port", Inv(rootPort),
                    "--servers", Inv(Count("DMLC_NUM_SERVER", 1)), "--workers", Inv(Count("DMLC_NUM_WORKER", 1)), .. schedulerArguments]),
                "server" => ("ps-lite mode", ["server", "--scheduler", scheduler, "--host", "0.0.0.0", "--advertise", self, .. serverArguments]),
                "worker" => ("ps-lite mode", ["worker", "--scheduler", scheduler, .. workerArguments]),
                _ => throw new ArgumentException($"pserver launch: DMLC_ROLE={role}: expected scheduler, server or worker"),
            };
        }
        if (env("SLURM_PROCID") is { Length: > 0 })
        {
            int rank = Count("SLURM_PROCID", 0), tasks = Count("SLURM_NTASKS", 3);
            if (servers < 1 || servers > tasks - 2)
            {
                throw new ArgumentException($"pserver launch: --servers {servers} does not fit SLURM_NTASKS={tasks}: task 0 is the scheduler, then the servers, and at least one worker");
            }
            string nodes = env("SLURM_JOB_NODELIST") ?? env("SLURM_NODELIST") ?? throw new ArgumentException("pserver launch: SLURM_JOB_NODELIST is not set (srun sets it)");
            string first = ExpandHostlist(nodes)[0];
            string scheduler = $"{first}:{Inv(port)}";
            string self = env("SLURMD_NODENAME") is { Length: > 0 } host ? host : System.Net.Dns.GetHostName();
            string mode = $"Slurm mode, task {rank} of {tasks}";
            return rank == 0
                ? (mode, ["scheduler", "--host", "0.0.0.0", "--advertise", first, "--port", Inv(port), "--servers", Inv(servers), "--workers", Inv(tasks - 1 - servers), .. schedulerArguments])
                : rank <= servers
                    ? (mode, ["server", "--scheduler", scheduler, "--host", "0.0.0.0", "--advertise", self, .. serverArguments])
                    : (mode, ["worker", "--scheduler", scheduler, .. workerArguments]);
        }
        throw new ArgumentException("pserver launch: neither DMLC_ROLE (ps-lite's launchers) nor SLURM_PROCID (srun) is set; start the roles with pserver scheduler / server / worker instead");
    }

    /// <summary>Slurm's compressed host list (`node[01-03,07],gpu5`) as host names, in order.</summary>
    internal static List<string> ExpandHostlist(string hostlist)
    {
        var hosts = new List<string>();
        foreach (Match item in HostlistItem().Matches(hostlist))
        {
            string prefix = item.Groups["prefix"].Value, suffix = item.Groups["suffix"].Value;
            if (!item.Groups["ranges"].Success)
            {
                hosts.Add(prefix + suffix);
                continue;
            }
            foreach (string range in item.Groups["ranges"].Value.Split(','))
            {
                string[] ends = range.Split('-');
                if (ends.Length > 2 || !int.TryParse(ends[0], CultureInfo.InvariantCulture, out int from) || !int.TryParse(ends[^1], CultureInfo.InvariantCulture, out int to) || to < from)
                {
                    throw new ArgumentException($"pserver launch: cannot read the host list '{hostlist}' (range '{range}')");
                }
                for (int n = from; n <= to; n++)
                {
                    hosts.Add(prefix + n.ToString(CultureInfo.InvariantCulture).PadLeft(ends[0].Length, '0') + suffix);
                }
            }
        }
        return hosts.Count > 0 ? hosts : throw new ArgumentException($"pserver launch: the host list '{hostlist}' names no host");
    }

    private static string Inv(int value) => value.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"(?<prefix>[^,\[\]]+)(\[(?<ranges>[^\]]+)\](?<suffix>[^,\[\]]*))?")]
    private static partial Regex HostlistItem();
}
