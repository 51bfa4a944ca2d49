using System.CommandLine;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>Every `pserver` command, built once per process (the tests parse deployment files' command lines with it).</summary>
internal static class PserverCommands
{
    public static RootCommand Build()
    {
        var root = new RootCommand("pserver: ParameterServer.NET, a parameter server for distributed machine learning")
        {
            NodeCommands.Scheduler(),
            NodeCommands.Server(),
            NodeCommands.Worker(),
            LocalCommand.Create(),
            StatusCommand.Create(),
            ElasticCommands.Drain(),
            ElasticCommands.Rebalance(),
            TrainCommand.Create(),
            PredictCommand.Create(),
            PlanCommand.Create(),
            DataCommand.Create(),
            SketchCommands.Create(),
            BenchCommands.Create(),
            CheckpointCommand.Create(),
        };
        // `pserver launch` works out this process's role from its launcher's environment and runs that command line.
        root.Subcommands.Add(LaunchCommand.Create(arguments => root.Parse(arguments).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, Termination.Token)));
        root.Subcommands.Add(SecretCommand.Create());
        root.Subcommands.Add(SecretCommand.CreateTlsCert());
        root.Options.Add(PsOptions.Config);
        root.Options.Add(PsOptions.LogLevel);
        root.Options.Add(PsOptions.SecretFile);
        root.Options.Add(PsOptions.Insecure);
        root.Options.Add(PsOptions.TokenFile);
        PsOptions.TokenFile.Recursive = true;
        PsOptions.Config.Recursive = true;
        PsOptions.LogLevel.Recursive = true;
        PsOptions.SecretFile.Recursive = true;
        PsOptions.Insecure.Recursive = true;
        foreach (var option in PsOptions.TlsOptions)
        {
            root.Options.Add(option);
            option.Recursive = true;
        }
        return root;
    }
}
