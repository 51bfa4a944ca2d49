using System.CommandLine;
using ParameterServer.Apps.Yt8m;
using ParameterServer.Hosting;

[assembly: PsApp(typeof(Yt8mAppDefinition))]

namespace ParameterServer.Apps.Yt8m;

/// <summary>`--app yt8m` and `pserver train yt8m`: options and factory.</summary>
public sealed class Yt8mAppDefinition : IPsAppDefinition, IPsTrainable
{
    /// <summary>--vocabulary.</summary>
    public static readonly Option<string> VocabularyFile = PsOptions.Create("--vocabulary", "../shared/data/youtube8m_meta/vocabulary.csv", "yt8m: YouTube-8M's vocabulary.csv (the labels)");

    /// <summary>--skip-bad-records.</summary>
    public static readonly Option<bool> SkipBadRecords = PsOptions.Create("--skip-bad-records", false, "yt8m: count records with bad content and go on, instead of stopping with their file and number");

    /// <summary>--experts.</summary>
    public static readonly Option<int> Experts = PsOptions.Create("--experts", 2, "yt8m: experts per label of --model moe");

    /// <inheritdoc/>
    public string Name => "yt8m";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } = [AppOptions.Data, AppOptions.Test, AppOptions.Model, AppOptions.Epochs, AppOptions.Batch, AppOptions.LearningRate, Experts, AppOptions.ModelOut, VocabularyFile, SkipBadRecords];

    /// <inheritdoc/>
    public string TrainDescription => "Tag YouTube-8M videos (video-level TFRecord shards) with a model partitioned over the servers, on a local cluster";

    /// <inheritdoc/>
    public IEnumerable<Option> TrainOptions => [];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new Yt8mApp(OptionsFrom(p));

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p)
    {
        var options = OptionsFrom(p);
        var args = new List<string>();
        AppRegistry.AddArgument(args, AppOptions.Data.Name, Path.GetFullPath(options.Data));
        AppRegistry.AddArgument(args, AppOptions.Test.Name, options.Test is { } test ? Path.GetFullPath(test) : null);
        AppRegistry.AddArgument(args, AppOptions.Model.Name, options.Model);
        AppRegistry.AddArgument(args, Experts.Name, options.Experts);
        AppRegistry.AddArgument(args, AppOptions.Epochs.Name, options.Epochs);
        AppRegistry.AddArgument(args, AppOptions.Batch.Name, options.Batch);
        AppRegistry.AddArgument(args, VocabularyFile.Name, Path.GetFullPath(options.Vocabulary));
        AppRegistry.AddArgument(args, AppOptions.LearningRate.Name, options.LearningRate);
        AppRegistry.AddArgument(args, AppOptions.ModelOut.Name, options.ModelOut is { } model ? Path.GetFullPath(model) : null);
        if (options.SkipBadRecords)
        {
            args.Add(SkipBadRecords.Name);
        }
        return args;
    }

    /// <summary>The app's options from the parsed command line, validated.</summary>
    public static Yt8mOptions OptionsFrom(ParseResult p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var defaults = new Yt8mOptions { Data = "" };
        var options = new Yt8mOptions
        {
            Data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("yt8m needs --data DIR: TFRecord shards, e.g. from `pserver data gen-yt8m --out DIR`"),
            Test = p.GetValue(AppOptions.Test),
            Model = p.GetValue(AppOptions.Model) ?? defaults.Model,
            Experts = p.GetValue(Experts),
            Epochs = p.GetResult(AppOptions.Epochs) is { Implicit: false } ? p.GetValue(AppOptions.Epochs) : defaults.Epochs,
            Batch = p.GetValue(AppOptions.Batch) ?? defaults.Batch,
            Vocabulary = p.GetValue(VocabularyFile)!,
            LearningRate = p.GetValue(AppOptions.LearningRate) ?? defaults.LearningRate,
            SkipBadRecords = p.GetValue(SkipBadRecords),
            ModelOut = p.GetValue(AppOptions.ModelOut),
            Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!),
        };
        options.Validate();
        return options;
    }

    /// <inheritdoc/>
    public async Task<int> TrainAsync(ParseResult p, CancellationToken ct)
    {
        var options = OptionsFrom(p);
        _ = options.Shards(); // says what is missing before any process starts
        return await LocalCluster.TrainAsync(p, [.. AppRegistry.Forward(p, this)], "train", ct);
    }
}
