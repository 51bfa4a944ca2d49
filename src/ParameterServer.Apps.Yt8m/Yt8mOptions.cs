using ParameterServer.Client;

namespace ParameterServer.Apps.Yt8m;

/// <summary>One YouTube-8M training job, as every worker sees it.</summary>
public sealed record Yt8mOptions
{
    /// <summary>A directory of train-*.tfrecord shards (or any *.tfrecord but validate-*), or one shard file.</summary>
    public required string Data { get; init; }

    /// <summary>Held-out shards; by default the validate-*.tfrecord files beside the training shards.</summary>
    public string? Test { get; init; }

    public string Vocabulary { get; init; } = "../shared/data/youtube8m_meta/vocabulary.csv";

    /// <summary>
    /// logistic: one logistic regression per label over the 1,152 features (4.45M weights); moe: the starter code's
    /// mixture of experts, per label a softmax gate over <see cref="Experts"/> logistic experts and a dummy that says 0
    /// ((2 E + 1) x 4.45M weights).
    /// </summary>
    public string Model { get; init; } = "logistic";

    /// <summary>Experts per label of the mixture of experts (the starter code's default is 2).</summary>
    public int Experts { get; init; } = 2;

    public int Epochs { get; init; } = 5;

    public int Batch { get; init; } = 128;

    /// <summary>AdaGrad's learning rate on the servers (DistBelief's rule for Downpour).</summary>
    public double? LearningRate { get; init; }

    /// <summary>
    /// --lr, or the model's default, from biases started at the labels' priors (20,000 generated videos, 2 epochs on
    /// 1 x 2): 0.25 for logistic regression (GAP@20 0.856 against 0.841 at 0.5, 0.823 at 1.0 and 0.838 at 0.1), 0.1 for
    /// the mixture of experts (0.854 against 0.845 at 0.25, 0.798 at 0.5 and 0.700 at 1.0).
    /// </summary>
    public double EffectiveLearningRate => LearningRate ?? (Model == "moe" ? 0.1 : 0.25);

    public string Update => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"adagrad:lr={EffectiveLearningRate}");

    public bool SkipBadRecords { get; init; }

    /// <summary>Where rank 0 writes the trained model (for `pserver predict`); null for nowhere.</summary>
    public string? ModelOut { get; init; }

    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    public int Seed { get; init; } = 1;

    public void Validate()
    {
        if (Model is not ("logistic" or "moe"))
        {
            throw new ArgumentException($"--model '{Model}' is not a yt8m model: use logistic (a logistic regression per label) or moe (a mixture of --experts per label)");
        }
        if (Epochs < 1 || Batch < 1 || !(EffectiveLearningRate > 0) || Experts is < 1 or > 16)
        {
            throw new ArgumentException($"--epochs and --batch must be at least 1, --lr positive and --experts in [1, 16], got {Epochs}, {Batch}, {EffectiveLearningRate} and {Experts}");
        }
    }

    /// <summary>The training shards and the held-out ones, sorted by name.</summary>
    public (IReadOnlyList<string> Train, IReadOnlyList<string> Test) Shards()
    {
        List<string> Files(string path, Func<string, bool> keep) => Directory.Exists(path)
            ? Directory.EnumerateFiles(path, "*.tfrecord").Where(f => keep(Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList()
            : File.Exists(path) ? [path] : throw new Hosting.UsageException($"'{path}' is neither a directory of .tfrecord shards nor a shard file");
        var train = Files(Data, name => !name.StartsWith("validate-", StringComparison.Ordinal));
        var test = Test is { } t ? Files(t, _ => true) : Directory.Exists(Data) ? Files(Data, name => name.StartsWith("validate-", StringComparison.Ordinal)) : [];
        if (train.Count == 0)
        {
            throw new Hosting.UsageException($"'{Data}' holds no training shards (*.tfrecord); make some with `pserver data gen-yt8m --out DIR`");
        }
        return (train, test);
    }
}
