using System.CommandLine;
using ParameterServer.Apps.Sketch;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Hosting;

[assembly: PsApp(typeof(SketchAppDefinition))]

namespace ParameterServer.Apps.Sketch;

/// <summary>`--app sketch` and `pserver train sketch` (what `pserver sketch ingest` runs): options and factory.</summary>
public sealed class SketchAppDefinition : IPsAppDefinition, IPsTrainable
{
    /// <summary>--synthetic.</summary>
    public static readonly Option<bool> Synthetic = PsOptions.Create("--synthetic", false, "sketch: count Zipf-distributed ids (--items, --zipf, --inserts) instead of --data files");

    /// <summary>--items.</summary>
    public static readonly Option<long> Items = PsOptions.Create("--items", 1_000_000L, "sketch --synthetic: distinct items (ids 1..N)");

    /// <summary>--zipf.</summary>
    public static readonly Option<double> Zipf = PsOptions.Create("--zipf", 1.1, "sketch --synthetic: Zipf exponent s, P(id k) ~ k^-s");

    /// <summary>--inserts.</summary>
    public static readonly Option<long> Inserts = PsOptions.Create("--inserts", 100_000_000L, "sketch --synthetic: inserts over all workers");

    /// <summary>--epsilon.</summary>
    public static readonly Option<double> Epsilon = PsOptions.Create("--epsilon", 1e-4, "sketch: an estimate exceeds the true count by at most epsilon x N (width = ceil(e/epsilon))...");

    /// <summary>--delta.</summary>
    public static readonly Option<double> Delta = PsOptions.Create("--delta", 0.01, "sketch: ...with probability 1 - delta (depth = ceil(ln(1/delta)))");

    /// <summary>--layout.</summary>
    public static readonly Option<string> Layout = PsOptions.Create("--layout", "rows", "sketch: rows (the classic layout and its bound) or blocked (an item's counters in one cache line; faster, a weaker bound)");

    /// <summary>--conservative.</summary>
    public static readonly Option<bool> Conservative = PsOptions.Create("--conservative", false, "sketch: conservative update in each worker's buffer (tighter overestimates)");

    /// <summary>--top.</summary>
    public static readonly Option<int> Top = PsOptions.Create("--top", 10, "sketch: heavy hitters to report");

    /// <summary>--flush-every.</summary>
    public static readonly Option<int> FlushEvery = PsOptions.Create("--flush-every", 1 << 20, "sketch: a worker pushes its buffered counts after this many inserts (or 200 ms)");

    /// <summary>--sketch-out.</summary>
    public static readonly Option<string?> SketchOut = PsOptions.Create<string?>("--sketch-out", null, "sketch: write the job's final sketch to this file");

    /// <summary>--stream-seed.</summary>
    public static readonly Option<int> Seed = PsOptions.Create("--stream-seed", 1, "sketch --synthetic: seed of the Zipf streams (worker r draws from seed and r)");

    /// <inheritdoc/>
    public string Name => "sketch";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } = [AppOptions.Data, Synthetic, Items, Zipf, Inserts, Epsilon, Delta, Layout, Conservative, Top, FlushEvery, SketchOut, Seed];

    /// <inheritdoc/>
    public string TrainDescription => "Count a stream with a CountMin sketch on a local cluster (same as `pserver sketch ingest`)";

    /// <inheritdoc/>
    public IEnumerable<Option> TrainOptions => [];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new SketchApp(OptionsFrom(p));

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p) => Arguments(OptionsFrom(p));

    /// <summary>The arguments of `--app sketch` that give a worker <paramref name="options"/> (paths made absolute).</summary>
    public static List<string> Arguments(SketchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var args = new List<string>();
        if (options.Files.Count > 0)
        {
            AppRegistry.AddArgument(args, AppOptions.Data.Name, string.Join(',', options.Files.Select(Path.GetFullPath)));
        }
        if (options.Synthetic)
        {
            args.Add(Synthetic.Name);
        }
        if (options.Conservative)
        {
            args.Add(Conservative.Name);
        }
        AppRegistry.AddArgument(args, Items.Name, options.Items);
        AppRegistry.AddArgument(args, Zipf.Name, options.Zipf);
        AppRegistry.AddArgument(args, Inserts.Name, options.Inserts);
        AppRegistry.AddArgument(args, Epsilon.Name, options.Epsilon);
        AppRegistry.AddArgument(args, Delta.Name, options.Delta);
        AppRegistry.AddArgument(args, Layout.Name, options.Layout.ToString().ToLowerInvariant());
        AppRegistry.AddArgument(args, Top.Name, options.Top);
        AppRegistry.AddArgument(args, FlushEvery.Name, options.FlushInserts);
        AppRegistry.AddArgument(args, SketchOut.Name, options.SketchOut is { } path ? Path.GetFullPath(path) : null);
        AppRegistry.AddArgument(args, Seed.Name, options.Seed);
        return args;
    }

    /// <summary>The app's options from the parsed command line, validated. --data takes files and directories, comma-separated.</summary>
    public static SketchOptions OptionsFrom(ParseResult p) => OptionsFrom(p, synthetic: false);

    /// <summary>The same, with <paramref name="synthetic"/> forcing a Zipf stream when no --data is given (benchmarks).</summary>
    public static SketchOptions OptionsFrom(ParseResult p, bool synthetic)
    {
        ArgumentNullException.ThrowIfNull(p);
        var files = new List<string>();
        foreach (string part in (p.GetValue(AppOptions.Data) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (Directory.Exists(part))
            {
                files.AddRange(Directory.EnumerateFiles(part).Order(StringComparer.Ordinal));
            }
            else
            {
                files.Add(part);
            }
        }
        string layout = p.GetValue(Layout)!.ToLowerInvariant();
        var options = new SketchOptions
        {
            Files = files,
            Synthetic = p.GetValue(Synthetic) || (synthetic && files.Count == 0),
            Items = p.GetValue(Items),
            Zipf = p.GetValue(Zipf),
            Inserts = p.GetValue(Inserts),
            Epsilon = p.GetValue(Epsilon),
            Delta = p.GetValue(Delta),
            Layout = layout switch
            {
                "rows" => SketchLayout.Rows,
                "blocked" => SketchLayout.Blocked,
                _ => throw new ArgumentException($"--layout '{layout}' is not one of rows, blocked"),
            },
            Conservative = p.GetValue(Conservative),
            Top = p.GetValue(Top),
            FlushInserts = p.GetValue(FlushEvery),
            SketchOut = p.GetValue(SketchOut),
            Seed = p.GetValue(Seed),
        };
        options.Validate();
        return options;
    }

    /// <inheritdoc/>
    public async Task<int> TrainAsync(ParseResult p, CancellationToken ct)
    {
        var options = OptionsFrom(p); // checked once here, not in every worker
        foreach (string file in options.Files)
        {
            if (!File.Exists(file))
            {
                throw new UsageException($"--data '{file}' does not exist");
            }
        }
        return await LocalCluster.TrainAsync(p, [.. AppRegistry.Forward(p, this)], "sketch", ct);
    }
}
