using System.CommandLine;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver drain` and `pserver rebalance`: change a running job's membership or key placement.</summary>
internal static class ElasticCommands
{
    public static Command Drain()
    {
        var node = new Option<int>("--node") { Description = "Id of the server or worker to drain (pserver status lists them)", Required = true };
        var command = new Command("drain", "Let a server or worker leave a running job gracefully: a server's key ranges move to the others first, a worker hands its remaining work units back")
        {
            PsOptions.Scheduler, node,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            string answer = await ClusterAdmin.DrainAsync(p.GetValue(PsOptions.Scheduler)!, p.GetValue(node), ct);
            Console.Out.WriteLine(answer);
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Rebalance()
    {
        var dryRun = PsOptions.Create("--dry-run", false, "Only say what would move");
        var command = new Command("rebalance", "Even out the servers' shares of the key space by moving virtual nodes from the most loaded to the least loaded servers")
        {
            PsOptions.Scheduler, dryRun,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            string answer = await ClusterAdmin.RebalanceAsync(p.GetValue(PsOptions.Scheduler)!, p.GetValue(dryRun), ct);
            Console.Out.WriteLine(answer);
            return ExitCodes.Ok;
        }));
        return command;
    }
}
