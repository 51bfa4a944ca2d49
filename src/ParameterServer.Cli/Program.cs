using System.CommandLine;
using ParameterServer.Cli;
using ParameterServer.Hosting;

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
root.Options.Add(PsOptions.Config);
root.Options.Add(PsOptions.LogLevel);
PsOptions.Config.Recursive = true;
PsOptions.LogLevel.Recursive = true;
return await root.Parse(args).InvokeAsync();

/// <summary>The entry point: internal (ASP.NET Core's generator would otherwise make it public for test hosts).</summary>
internal partial class Program;
