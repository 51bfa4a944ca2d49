using System.CommandLine;
using ParameterServer.Cli;

try
{
    Settings.Load(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return ExitCodes.Usage;
}
ParentWatch.StartIfRequested();

var root = new RootCommand("pserver: ParameterServer.NET, a parameter server for distributed machine learning")
{
    NodeCommands.Scheduler(),
    NodeCommands.Server(),
    NodeCommands.Worker(),
    LocalCluster.Command(),
    StatusCommand.Create(),
    ElasticCommands.Drain(),
    ElasticCommands.Rebalance(),
    TrainCommand.Create(),
    PredictCommand.Create(),
    DataCommand.Create(),
    BenchCommand.Create(),
    CheckpointCommand.Create(),
};
root.Options.Add(Options.Config);
root.Options.Add(Options.LogLevel);
Options.Config.Recursive = true;
Options.LogLevel.Recursive = true;
return await root.Parse(args).InvokeAsync();
