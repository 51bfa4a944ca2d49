using System.CommandLine;
using System.Globalization;
using ParameterServer.Apps.Counter;
using ParameterServer.Apps.LogisticRegression;
using ParameterServer.Apps;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>The options of every app, shared by `pserver worker`, `pserver local` and `pserver train` (launchers forward them).</summary>
internal static class AppOptions
{
    public static readonly Option<string> App = Options.Create("--app", "counter", $"The app to run: {string.Join(", ", AppCatalog.Names)}");
    public static readonly Option<string> Consistency = Options.Create("--consistency", "bounded:4", "sequential, eventual or bounded:TAU");

    // counter
    public static readonly Option<int> Keys = Options.Create("--keys", 1000, "counter: keys pushed per round, spread over the whole key space");
    public static readonly Option<int> Rounds = Options.Create("--rounds", 100, "counter: rounds of pushes per worker");
    public static readonly Option<int> Width = Options.Create("--width", 1, "counter: values per key");
    public static readonly Option<int> WorkUnits = Options.Create("--work-units", 0, "counter: share N rounds among the workers through the scheduler's work queue (a dead worker's rounds are reassigned or dropped); 0: every worker does --rounds");
    public static readonly Option<int> PauseMs = Options.Create("--pause-ms", 0, "counter: sleep between rounds, in milliseconds");
    public static readonly Option<int> SlowRank = Options.Create("--slow-rank", -1, "counter: only this rank pauses (-1: all)");
    public static readonly Option<string> Mode = Options.Create("--mode", "async", "counter: table update mode, sync or async");

    // logreg
    public static readonly Option<string?> Data = Options.Create<string?>("--data", null, "logreg: training data, LIBSVM text (gzip accepted)");
    public static readonly Option<string?> Test = Options.Create<string?>("--test", null, "logreg: test data evaluated after every epoch");
    public static readonly Option<int> Epochs = Options.Create("--epochs", 10, "logreg: passes over the training data");
    public static readonly Option<int> Batch = Options.Create("--batch", 100, "logreg: rows per minibatch");
    public static readonly Option<string> Optimizer = Options.Create("--optimizer", "ftrl", "logreg: ftrl, adagrad or sgd (run on the servers)");
    public static readonly Option<double?> LearningRate = Options.Create<double?>("--lr", null, "logreg: learning rate (FTRL alpha); default 0.1 for ftrl and adagrad, 0.01 for sgd");
    public static readonly Option<double> L1 = Options.Create("--l1", 0.5, "logreg: L1 regularisation (ftrl)");
    public static readonly Option<double> L2 = Options.Create("--l2", 1.0, "logreg: L2 regularisation (ftrl, sgd)");
    public static readonly Option<int> HashBits = Options.Create("--hash-bits", 0, "logreg: hash feature ids into 2^BITS keys (0: use ids as keys)");
    public static readonly Option<string?> ModelOut = Options.Create<string?>("--model-out", null, "logreg: write the trained weights to this file");
    public static readonly Option<bool> SkipBadLines = Options.Create("--skip-bad-lines", false, "logreg: count and skip malformed lines instead of stopping");

    public static IEnumerable<Option> Counter => [Keys, Rounds, WorkUnits, Width, PauseMs, SlowRank, Mode];

    public static readonly Option<bool> KeyCache = Options.Create("--key-cache", false, "logreg: key caching: a key list sent to a server before goes as a 16-byte signature (lossless)");
    public static readonly Option<string> Compress = Options.Create("--compress", "none", "logreg: value encoding of pushes and pull answers: none, or zero, lz, fp16, bf16, topk[:F], 1bit joined by '+' (zero and lz are lossless)");
    public static readonly Option<string> Filter = Options.Create("--filter", "none", "logreg: push filter: none, kkt (skip gradients that cannot move a zero weight), sigmod:THRESHOLD, random:P");

    public static readonly Option<string> PullFilter = Options.Create("--pull-filter", "none", "logreg: pull filter: none, sigmod:THRESHOLD (servers send a weight only when it moved by more than THRESHOLD since they last sent it to this worker)");
    public static IEnumerable<Option> LogReg => [Data, Test, Epochs, Batch, Optimizer, LearningRate, L1, L2, HashBits, ModelOut, SkipBadLines, KeyCache, Compress, Filter, PullFilter];

    public static IEnumerable<Option> All => [App, Consistency, .. Counter, .. LogReg];

    /// <summary>The app options as arguments for a child `pserver worker` (values already resolved from env and config).</summary>
    public static List<string> Forward(ParseResult p)
    {
        var args = new List<string>();
        void Add(string name, object? value)
        {
            if (value is not null)
            {
                args.Add(name);
                args.Add(Convert.ToString(value, CultureInfo.InvariantCulture)!);
            }
        }
        string app = p.GetValue(App)!;
        Add(App.Name, app);
        Add(Consistency.Name, p.GetValue(Consistency));
        if (app == "counter")
        {
            Add(Keys.Name, p.GetValue(Keys));
            Add(Rounds.Name, p.GetValue(Rounds));
            Add(WorkUnits.Name, p.GetValue(WorkUnits));
            Add(Width.Name, p.GetValue(Width));
            Add(PauseMs.Name, p.GetValue(PauseMs));
            Add(SlowRank.Name, p.GetValue(SlowRank));
            Add(Mode.Name, p.GetValue(Mode));
        }
        else
        {
            Add(Data.Name, FullPath(p.GetValue(Data)));
            Add(Test.Name, FullPath(p.GetValue(Test)));
            Add(Epochs.Name, p.GetValue(Epochs));
            Add(Batch.Name, p.GetValue(Batch));
            Add(Optimizer.Name, p.GetValue(Optimizer));
            Add(LearningRate.Name, p.GetValue(LearningRate));
            Add(L1.Name, p.GetValue(L1));
            Add(L2.Name, p.GetValue(L2));
            Add(HashBits.Name, p.GetValue(HashBits));
            Add(ModelOut.Name, FullPath(p.GetValue(ModelOut)));
            if (p.GetValue(SkipBadLines))
            {
                args.Add(SkipBadLines.Name);
            }
            if (p.GetValue(KeyCache))
            {
                args.Add(KeyCache.Name);
            }
            Add(Compress.Name, p.GetValue(Compress));
            Add(Filter.Name, p.GetValue(Filter));
            Add(PullFilter.Name, p.GetValue(PullFilter));
        }
        return args;
    }

    private static string? FullPath(string? path) => path is null ? null : Path.GetFullPath(path);

    public static IPsApp Create(ParseResult p)
    {
        string name = p.GetValue(App)!;
        return name switch
        {
            "counter" => new CounterApp(new CounterOptions
            {
                Keys = p.GetValue(Keys),
                Rounds = p.GetValue(Rounds),
                WorkUnits = p.GetValue(WorkUnits),
                Width = p.GetValue(Width),
                PauseMs = p.GetValue(PauseMs),
                SlowRank = p.GetValue(SlowRank) is int r and >= 0 ? r : null,
                Mode = ParseMode(p.GetValue(Mode)!),
                Consistency = Client.Consistency.Parse(p.GetValue(Consistency)!),
            }),
            "logreg" => new LogRegApp(LogRegOptionsFrom(p)),
            _ => throw new ArgumentException($"unknown app '{name}': expected one of {string.Join(", ", AppCatalog.Names)}"),
        };
    }

    public static LogRegOptions LogRegOptionsFrom(ParseResult p)
    {
        var options = new LogRegOptions
        {
            Data = p.GetValue(Data) ?? throw new ArgumentException("logreg needs --data FILE (LIBSVM text, gzip accepted)"),
            Test = p.GetValue(Test),
            Epochs = p.GetValue(Epochs),
            Batch = p.GetValue(Batch),
            Optimizer = p.GetValue(Optimizer)!.ToLowerInvariant(),
            LearningRate = p.GetValue(LearningRate),
            L1 = p.GetValue(L1),
            L2 = p.GetValue(L2),
            Consistency = Client.Consistency.Parse(p.GetValue(Consistency)!),
            HashBits = p.GetValue(HashBits),
            ModelOut = p.GetValue(ModelOut),
            SkipBadLines = p.GetValue(SkipBadLines),
            KeyCaching = p.GetValue(KeyCache),
            Compression = p.GetValue(Compress)!,
            Filter = p.GetValue(Filter)!,
            PullFilter = p.GetValue(PullFilter)!,
        };
        options.Validate();
        return options;
    }

    private static UpdateMode ParseMode(string text) => text.ToLowerInvariant() switch
    {
        "sync" => UpdateMode.Sync,
        "async" => UpdateMode.Async,
        _ => throw new ArgumentException($"--mode must be sync or async, got '{text}'"),
    };
}
