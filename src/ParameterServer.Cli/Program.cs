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

var root = PserverCommands.Build();
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    // Bad arguments exit with 2 (ExitCodes.Usage), as the README promises, not System.CommandLine's 1.
    foreach (var error in parsed.Errors)
    {
        Console.Error.WriteLine($"error: {error.Message}");
    }
    var names = new List<string>();
    for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
    {
        names.Insert(0, result.Command == root ? "pserver" : result.Command.Name);
    }
    Console.Error.WriteLine($"run `{string.Join(' ', names)} --help` for its options");
    return ExitCodes.Usage;
}
try
{
    PsOptions.ExportSecurity(parsed);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return ExitCodes.Usage;
}
// Termination handles Ctrl-C and SIGTERM (a SIGTERM drains a server or worker first), not System.CommandLine.
Termination.Install();
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, Termination.Token);

/// <summary>The entry point: internal (ASP.NET Core's generator would otherwise make it public for test hosts).</summary>
internal partial class Program;
