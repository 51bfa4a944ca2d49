using System.Globalization;
using ParameterServer.Client;
using ParameterServer.Extensions;

namespace ParameterServer.Apps.LogReg;

/// <summary>Options of sparse logistic regression (`pserver train logreg`, `--app logreg`).</summary>
public sealed record LogRegOptions
{
    public required string Data { get; init; }

    public string? Test { get; init; }

    /// <summary>Online: passes over the data; <see cref="Hosting.AppOptions.AutoEpochs"/> (`--epochs auto`) stops when the held-out log loss stops improving.</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Online with `--epochs auto`: the fraction of rows held out to decide when to stop.</summary>
    public double ValidationFraction { get; init; } = 0.1;

    /// <summary>Online with `--epochs auto`: the most epochs it runs.</summary>
    public const int MaxAutoEpochs = 100;

    internal bool AutoEpochs => Epochs == Hosting.AppOptions.AutoEpochs;

    /// <summary>The epochs the online solver may run.</summary>
    internal int EpochLimit => AutoEpochs ? MaxAutoEpochs : Epochs;

    /// <summary>Rows per minibatch.</summary>
    public int Batch { get; init; } = 100;

    /// <summary>
    /// bpg (the default): the paper's delayed block proximal gradient, a batch method that converges to the optimum of
    /// the regularised objective; owlqn: L-BFGS/OWL-QN with its vectors on the servers (the same optimum); online:
    /// minibatch passes with the servers running <see cref="Optimizer"/>.
    /// </summary>
    public string Solver { get; init; } = "bpg";

    /// <summary>bpg: feature blocks per iteration; 0 (the default) picks <see cref="AutoBlocks"/>.</summary>
    public int Blocks { get; init; }

    /// <summary>bpg: blocks a worker may start before the servers answered an earlier one (the paper's tau; 0: sequential).</summary>
    public int Delay { get; init; }

    /// <summary>bpg, owlqn: stop when an iteration lowers the objective by less than this fraction of it.</summary>
    public double Tolerance { get; init; } = 1e-6;

    /// <summary>bpg, owlqn: stop after this many iterations even if not converged.</summary>
    public int MaxIterations { get; init; } = 500;

    internal bool IsBatch => Solver is "bpg" or "owlqn";

    /// <summary>bpg's block count for data with this many nonzeros in this many rows: twice a mean row's features, 32 to 1024.</summary>
    public static int AutoBlocks(long nonzeros, long rows) => (int)Math.Clamp(2 * nonzeros / Math.Max(1, rows), 32, 1024);

    /// <summary>ftrl, adagrad or sgd: the update the servers run.</summary>
    public string Optimizer { get; init; } = "ftrl";

    /// <summary>Learning rate (FTRL's alpha); null picks the optimizer's default.</summary>
    public double? LearningRate { get; init; }

    /// <summary>L1 regularisation; null: 0 for bpg and owlqn (liblinear -s 0's objective), 0.5 for ftrl.</summary>
    public double? L1 { get; init; }

    /// <summary><see cref="L1"/> or its solver's default.</summary>
    public double EffectiveL1 => L1 ?? (IsBatch ? 0 : 0.5);

    public double L2 { get; init; } = 1;

    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    public int HashBits { get; init; }

    public string? ModelOut { get; init; }

    public bool SkipBadLines { get; init; }

    /// <summary>Key caching for the weights table (see <see cref="TableSpec.KeyCaching"/>).</summary>
    public bool KeyCaching { get; init; }

    /// <summary>Value encoding of pushes and pull answers (see <see cref="TableSpec.Compression"/>).</summary>
    public string Compression { get; init; } = "none";

    /// <summary>Push filter: none, kkt, sigmod:THRESHOLD or random:P (see <see cref="PushFilters.Parse"/>).</summary>
    public string Filter { get; init; } = "none";

    /// <summary>Pull filter of the weights table: none or sigmod:THRESHOLD (see <see cref="TableSpec.PullFilter"/>).</summary>
    public string PullFilter { get; init; } = "none";

    public bool UsesKkt => Filter.Trim().Equals("kkt", StringComparison.OrdinalIgnoreCase);

    /// <summary>Internal: a dedicated table name, so several runs can share a cluster (benchmarks).</summary>
    public string TablePrefix { get; init; } = "logreg";

    public double EffectiveLearningRate => LearningRate ?? Optimizer switch
    {
        "ftrl" => 0.1,
        "adagrad" => 0.1,
        _ => 0.01,
    };

    /// <summary>The server-side handler spec for the chosen optimizer.</summary>
    public string HandlerSpec => IsBatch ? string.Create(CultureInfo.InvariantCulture, $"prox:l1={EffectiveL1},l2={L2}") : Optimizer switch
    {
        "ftrl" => string.Create(CultureInfo.InvariantCulture, $"ftrl:alpha={EffectiveLearningRate},beta=1,l1={EffectiveL1},l2={L2}"),
        "adagrad" => string.Create(CultureInfo.InvariantCulture, $"adagrad:lr={EffectiveLearningRate}"),
        "sgd" => string.Create(CultureInfo.InvariantCulture, $"sgd:lr={EffectiveLearningRate},l2={L2}"),
        _ => throw new ArgumentException($"--optimizer must be ftrl, adagrad or sgd, got '{Optimizer}'"),
    };

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Data))
        {
            throw new ArgumentException("--data is required: a LIBSVM file (optionally gzip) to train on");
        }
        if ((Epochs < 1 && !AutoEpochs) || Batch < 1)
        {
            throw new ArgumentException($"--epochs must be at least 1 or auto and --batch at least 1 (got {Epochs} and {Batch})");
        }
        if (AutoEpochs && !(ValidationFraction is > 0 and <= 0.5))
        {
            throw new ArgumentException($"--validation-fraction must be in (0, 0.5], got {ValidationFraction}");
        }
        if (Solver is not ("online" or "bpg" or "owlqn"))
        {
            throw new ArgumentException($"--solver must be bpg, owlqn or online, got '{Solver}'");
        }
        if (IsBatch && (Blocks < 0 || MaxIterations < 1 || Delay < 0 || !(Tolerance >= 0)))
        {
            throw new ArgumentException($"--max-iterations must be at least 1, --blocks, --delay and --tol at least 0 (got {MaxIterations}, {Blocks}, {Delay}, {Tolerance})");
        }
        if (IsBatch && EffectiveL1 == 0 && L2 == 0)
        {
            throw new ArgumentException($"--solver {Solver} needs --l1 or --l2 above 0: unregularised logistic regression has no optimum on separable data");
        }
        if (HashBits is < 0 or > 62)
        {
            throw new ArgumentException($"--hash-bits must be in [0, 62] (0: no hashing), got {HashBits}");
        }
        if (EffectiveL1 < 0 || L2 < 0 || EffectiveLearningRate <= 0)
        {
            throw new ArgumentException($"--l1 and --l2 must be >= 0 and --lr > 0 (got {EffectiveL1}, {L2}, {EffectiveLearningRate})");
        }
        _ = HandlerSpec;
        new TableSpec("check") { Compression = Compression, PullFilter = PullFilter }.Validate(); // names a bad --compress stage or --pull-filter
        _ = PushFilters.Parse(Filter, () => new KktFilter((float)EffectiveL1));
        if (UsesKkt && Optimizer != "ftrl")
        {
            throw new ArgumentException($"--filter kkt needs an L1-regularised model (--optimizer ftrl), got {Optimizer}");
        }
    }
}
