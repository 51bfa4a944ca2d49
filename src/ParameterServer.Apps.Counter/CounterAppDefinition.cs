using System.CommandLine;
using System.Text.Json;
using ParameterServer.Apps.Counter;
using ParameterServer.Hosting;

[assembly: PsApp(typeof(CounterAppDefinition))]

namespace ParameterServer.Apps.Counter;

/// <summary>`--app counter`: its options, its factory, and the line `pserver local --json` sums the workers up with.</summary>
public sealed class CounterAppDefinition : IPsAppDefinition
{
    /// <summary>--keys.</summary>
    public static readonly Option<int> Keys = PsOptions.Create("--keys", 1000, "counter: keys pushed per round, spread over the whole key space");

    /// <summary>--rounds.</summary>
    public static readonly Option<int> Rounds = PsOptions.Create("--rounds", 100, "counter: rounds of pushes per worker");

    /// <summary>--width.</summary>
    public static readonly Option<int> Width = PsOptions.Create("--width", 1, "counter: values per key");

    /// <summary>--work-units.</summary>
    public static readonly Option<int> WorkUnits = PsOptions.Create("--work-units", 0, "counter: share N rounds among the workers through the scheduler's work queue (a dead worker's rounds are reassigned or dropped); 0: every worker does --rounds");

    /// <summary>--pause-ms.</summary>
    public static readonly Option<int> PauseMs = PsOptions.Create("--pause-ms", 0, "counter: sleep between rounds, in milliseconds");

    /// <summary>--slow-rank.</summary>
    public static readonly Option<int> SlowRank = PsOptions.Create("--slow-rank", -1, "counter: only this rank pauses (-1: all)");

    /// <summary>--mode.</summary>
    public static readonly Option<string> Mode = PsOptions.Create("--mode", "async", "counter: table update mode, sync or async");

    /// <inheritdoc/>
    public string Name => "counter";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } = [Keys, Rounds, WorkUnits, Width, PauseMs, SlowRank, Mode];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new CounterApp(new CounterOptions
    {
        Keys = p.GetValue(Keys),
        Rounds = p.GetValue(Rounds),
        WorkUnits = p.GetValue(WorkUnits),
        Width = p.GetValue(Width),
        PauseMs = p.GetValue(PauseMs),
        SlowRank = p.GetValue(SlowRank) is int r and >= 0 ? r : null,
        Mode = ParseMode(p.GetValue(Mode)!),
        Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!),
    });

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p)
    {
        var args = new List<string>();
        AppRegistry.AddArgument(args, Keys.Name, p.GetValue(Keys));
        AppRegistry.AddArgument(args, Rounds.Name, p.GetValue(Rounds));
        AppRegistry.AddArgument(args, WorkUnits.Name, p.GetValue(WorkUnits));
        AppRegistry.AddArgument(args, Width.Name, p.GetValue(Width));
        AppRegistry.AddArgument(args, PauseMs.Name, p.GetValue(PauseMs));
        AppRegistry.AddArgument(args, SlowRank.Name, p.GetValue(SlowRank));
        AppRegistry.AddArgument(args, Mode.Name, p.GetValue(Mode));
        return args;
    }

    /// <summary>One line that sums the workers' results up, the same way each worker reports; exit code 1 when one mismatched.</summary>
    public int SummarizeLocal(IReadOnlyList<JsonElement> results, int workers, TextWriter output)
    {
        if (results.Count != workers)
        {
            Console.Error.WriteLine($"local: expected {workers} result lines from the workers, got {results.Count}");
            return ExitCodes.Failed;
        }
        bool ok = results.All(r => r.TryGetProperty("ok", out var v) && v.GetBoolean());
        // A worker that joined late or was drained prints a shorter line (no check of its own): its absent counts are 0.
        static long Count(JsonElement r, string name) => r.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
        var summary = new Dictionary<string, object>
        {
            ["app"] = Name,
            ["ok"] = ok,
            ["workers"] = workers,
            ["keys"] = results.Max(r => Count(r, "keys")),
            ["pushes"] = results.Sum(r => Count(r, "pushes")),
            ["mismatches"] = results.Sum(r => Count(r, "mismatches")),
            ["seconds"] = results.Max(r => r.TryGetProperty("seconds", out var v) ? v.GetDouble() : 0),
        };
        output.WriteLine(JsonSerializer.Serialize(summary));
        return ok ? ExitCodes.Ok : ExitCodes.Failed;
    }

    private static UpdateMode ParseMode(string text) => text.ToLowerInvariant() switch
    {
        "sync" => UpdateMode.Sync,
        "async" => UpdateMode.Async,
        _ => throw new ArgumentException($"--mode must be sync or async, got '{text}'"),
    };
}
