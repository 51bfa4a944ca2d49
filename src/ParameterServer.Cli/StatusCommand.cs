using System.CommandLine;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver status`: nodes, roles, liveness and key ranges of a running job, from its scheduler.</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var command = new Command("status", "Show the nodes, their liveness and the key ranges of a running job") { PsOptions.Scheduler, PsOptions.Json };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            var status = await ClusterAdmin.StatusAsync(p.GetValue(PsOptions.Scheduler)!, TimeSpan.FromSeconds(10), ct);
            if (p.GetValue(PsOptions.Json))
            {
                Console.Out.WriteLine(status.ToJson());
                return ExitCodes.Ok;
            }
            foreach (string line in status.ToText())
            {
                Console.Out.WriteLine(line);
            }
            return ExitCodes.Ok;
        }));
        return command;
    }
}
