using System.CommandLine;
using ParameterServer.Apps.Lda;
using ParameterServer.Hosting;

[assembly: PsApp(typeof(LdaAppDefinition))]

namespace ParameterServer.Apps.Lda;

/// <summary>`--app lda` and `pserver train lda`: its options, its factory, and the training job on a local cluster.</summary>
public sealed class LdaAppDefinition : IPsAppDefinition, IPsTrainable
{
    /// <summary>--format.</summary>
    public static readonly Option<string> Format = PsOptions.Create("--format", "uci", "lda: the corpus format, uci (docword.txt, 1-based ids) or ldac (N id:count ..., 0-based ids)");

    /// <summary>--vocab.</summary>
    public static readonly Option<string?> Vocabulary = PsOptions.Create<string?>("--vocab", null, "lda: the vocabulary file, one word per line (required for ldac)");

    /// <summary>--topics.</summary>
    public static readonly Option<int> Topics = PsOptions.Create("--topics", 20, "lda: number of topics K");

    /// <summary>--iterations.</summary>
    public static readonly Option<int> Iterations = PsOptions.Create("--iterations", 300, "lda: sweeps over the corpus");

    /// <summary>--alpha.</summary>
    public static readonly Option<double> Alpha = PsOptions.Create("--alpha", 0.1, "lda: Dirichlet prior on each document's topic mix");

    /// <summary>--beta.</summary>
    public static readonly Option<double> Beta = PsOptions.Create("--beta", 0.1, "lda: Dirichlet prior on each topic's words");

    /// <summary>--hold-out.</summary>
    public static readonly Option<int> HoldOut = PsOptions.Create("--hold-out", 0, "lda, without --test: hold out every N-th document and report its perplexity (0: none)");

    /// <summary>--eval-every.</summary>
    public static readonly Option<int> EvalEvery = PsOptions.Create("--eval-every", 10, "lda: held-out perplexity every N iterations and after the last");

    /// <summary>--sampler.</summary>
    public static readonly Option<string> Sampler = PsOptions.Create("--sampler", "lightlda", "lda: lightlda (O(1) Metropolis-Hastings, default) or gibbs (O(K), the reference)");

    /// <summary>--true-topics.</summary>
    public static readonly Option<string?> TrueTopics = PsOptions.Create<string?>("--true-topics", null, "lda: the true topics of a generated corpus (gen-lda's OUT.topics); reports their recovery by cosine similarity");

    /// <inheritdoc/>
    public string Name => "lda";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } =
        [AppOptions.Data, AppOptions.Test, AppOptions.ModelOut, AppOptions.Compress, Format, Vocabulary, Topics, Iterations, Alpha, Beta, HoldOut, EvalEvery, Sampler, TrueTopics];

    /// <inheritdoc/>
    public string TrainDescription => "Train an LDA topic model with the word-topic counts on a local cluster of real processes (LightLDA's O(1) sampler)";

    /// <inheritdoc/>
    public IEnumerable<Option> TrainOptions => [];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new LdaApp(OptionsFrom(p));

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p)
    {
        var args = new List<string>();
        string? Full(string? path) => path is null ? null : Path.GetFullPath(path);
        AppRegistry.AddArgument(args, AppOptions.Data.Name, Full(p.GetValue(AppOptions.Data)));
        AppRegistry.AddArgument(args, AppOptions.Test.Name, Full(p.GetValue(AppOptions.Test)));
        AppRegistry.AddArgument(args, AppOptions.ModelOut.Name, Full(p.GetValue(AppOptions.ModelOut)));
        AppRegistry.AddArgument(args, AppOptions.Compress.Name, p.GetValue(AppOptions.Compress));
        AppRegistry.AddArgument(args, Format.Name, p.GetValue(Format));
        AppRegistry.AddArgument(args, Vocabulary.Name, Full(p.GetValue(Vocabulary)));
        AppRegistry.AddArgument(args, Topics.Name, p.GetValue(Topics));
        AppRegistry.AddArgument(args, Iterations.Name, p.GetValue(Iterations));
        AppRegistry.AddArgument(args, Alpha.Name, p.GetValue(Alpha));
        AppRegistry.AddArgument(args, Beta.Name, p.GetValue(Beta));
        AppRegistry.AddArgument(args, HoldOut.Name, p.GetValue(HoldOut));
        AppRegistry.AddArgument(args, EvalEvery.Name, p.GetValue(EvalEvery));
        AppRegistry.AddArgument(args, Sampler.Name, p.GetValue(Sampler));
        AppRegistry.AddArgument(args, TrueTopics.Name, Full(p.GetValue(TrueTopics)));
        return args;
    }

    /// <summary>The app's options from the parsed command line, validated.</summary>
    public static LdaOptions OptionsFrom(ParseResult p)
    {
        string sampler = p.GetValue(Sampler)!.ToLowerInvariant();
        if (sampler is not ("lightlda" or "gibbs"))
        {
            throw new ArgumentException($"--sampler '{sampler}' is not one of lightlda, gibbs");
        }
        var options = new LdaOptions
        {
            Data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("lda needs --data FILE: a UCI docword.txt or an lda-c file (with --format ldac --vocab FILE)"),
            Test = p.GetValue(AppOptions.Test),
            ModelOut = p.GetValue(AppOptions.ModelOut),
            Compression = p.GetValue(AppOptions.Compress)!,
            Format = p.GetValue(Format)!.ToLowerInvariant(),
            Vocabulary = p.GetValue(Vocabulary),
            Topics = p.GetValue(Topics),
            Iterations = p.GetValue(Iterations),
            Alpha = p.GetValue(Alpha),
            Beta = p.GetValue(Beta),
            HoldOut = p.GetValue(HoldOut),
            EvalEvery = p.GetValue(EvalEvery),
            ExactGibbs = sampler == "gibbs",
            TrueTopics = p.GetValue(TrueTopics),
            Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!),
        };
        options.Validate();
        return options;
    }

    /// <inheritdoc/>
    public async Task<int> TrainAsync(ParseResult p, CancellationToken ct)
    {
        var options = OptionsFrom(p); // checked once here, not in every worker
        foreach (var (path, what) in new[] { (options.Data, "--data"), (options.Test, "--test"), (options.Vocabulary, "--vocab"), (options.TrueTopics, "--true-topics") })
        {
            if (path is not null && !File.Exists(path))
            {
                throw new UsageException($"{what} '{path}' does not exist");
            }
        }
        return await LocalCluster.TrainAsync(p, [.. AppRegistry.Forward(p, this)], "train", ct);
    }
}
