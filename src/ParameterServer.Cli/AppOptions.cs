using System.CommandLine;
using ParameterServer.Apps;
using ParameterServer.Apps.Counter;

namespace ParameterServer.Cli;

/// <summary>The options of every app, shared by `pserver worker` and `pserver local` (which forwards them to its workers).</summary>
internal static class AppOptions
{
    public static readonly Option<string> App = Options.Create("--app", "counter", $"The app to run: {string.Join(", ", AppCatalog.Names)}");
    public static readonly Option<int> Keys = Options.Create("--keys", 1000, "counter: keys pushed per round, spread over the whole key space");
    public static readonly Option<int> Rounds = Options.Create("--rounds", 100, "counter: rounds of pushes per worker");
    public static readonly Option<int> Width = Options.Create("--width", 1, "counter: values per key");
    public static readonly Option<int> PauseMs = Options.Create("--pause-ms", 0, "counter: sleep between rounds, in milliseconds");
    public static readonly Option<int> SlowRank = Options.Create("--slow-rank", -1, "counter: only this rank pauses (-1: all)");
    public static readonly Option<string> Mode = Options.Create("--mode", "async", "counter: table update mode, sync or async");
    public static readonly Option<string> Consistency = Options.Create("--consistency", "bounded:4", "counter: sequential, eventual or bounded:TAU");

    public static IEnumerable<Option> All => [App, Keys, Rounds, Width, PauseMs, SlowRank, Mode, Consistency];

    /// <summary>The app options as arguments for a child `pserver worker` (values already resolved from env and config).</summary>
    public static IEnumerable<string> Forward(ParseResult p) =>
    [
        App.Name, p.GetValue(App)!,
        Keys.Name, Invariant(p.GetValue(Keys)),
        Rounds.Name, Invariant(p.GetValue(Rounds)),
        Width.Name, Invariant(p.GetValue(Width)),
        PauseMs.Name, Invariant(p.GetValue(PauseMs)),
        SlowRank.Name, Invariant(p.GetValue(SlowRank)),
        Mode.Name, p.GetValue(Mode)!,
        Consistency.Name, p.GetValue(Consistency)!,
    ];

    private static string Invariant(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static IPsApp Create(ParseResult p)
    {
        string name = p.GetValue(App)!;
        return name switch
        {
            "counter" => new CounterApp(new CounterOptions
            {
                Keys = p.GetValue(Keys),
                Rounds = p.GetValue(Rounds),
                Width = p.GetValue(Width),
                PauseMs = p.GetValue(PauseMs),
                SlowRank = p.GetValue(SlowRank) is int r and >= 0 ? r : null,
                Mode = ParseMode(p.GetValue(Mode)!),
                Consistency = ParameterServer.Consistency.Parse(p.GetValue(Consistency)!),
            }),
            _ => throw new ArgumentException($"unknown app '{name}': expected one of {string.Join(", ", AppCatalog.Names)}"),
        };
    }

    private static UpdateMode ParseMode(string text) => text.ToLowerInvariant() switch
    {
        "sync" => UpdateMode.Sync,
        "async" => UpdateMode.Async,
        _ => throw new ArgumentException($"--mode must be sync or async, got '{text}'"),
    };
}
