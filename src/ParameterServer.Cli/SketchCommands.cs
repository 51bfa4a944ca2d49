using System.CommandLine;
using ParameterServer.Apps.Sketch;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver sketch ingest` (a local cluster counting a stream) and `pserver sketch query` (a running job's estimates).</summary>
internal static class SketchCommands
{
    public static Command Create()
    {
        var sketch = new Command("sketch", "Count a stream with a CountMin sketch spread over the servers, and query it");
        var definition = AppRegistry.Apps.OfType<SketchAppDefinition>().Single();
        sketch.Subcommands.Add(TrainCommand.ForApp(definition, definition, "ingest",
            "Count the items of text files (--data FILE,...; .gz and .bz2 accepted) or a Zipf stream (--synthetic) on a local cluster, then print the heavy hitters"));

        var items = new Option<string?>("--items") { Description = "Items whose counts to estimate, comma-separated" };
        var top = PsOptions.Create("--top", 0, "Also list the K heaviest items");
        var query = new Command("query", "Estimate items' counts and list the heavy hitters of a running sketch job") { PsOptions.Scheduler, items, top, PsOptions.Json, PsOptions.LogLevel };
        query.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            var names = (p.GetValue(items) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            using var loggers = Logging.Create(p.GetResult(PsOptions.LogLevel) is { Implicit: false } ? p.GetValue(PsOptions.LogLevel)! : "warning");
            return await SketchQuery.RunAsync(p.GetValue(PsOptions.Scheduler)!, names, p.GetValue(top), p.GetValue(PsOptions.Json), Console.Out, loggers, TimeSpan.FromSeconds(10), ct);
        }));
        sketch.Subcommands.Add(query);
        return sketch;
    }
}
