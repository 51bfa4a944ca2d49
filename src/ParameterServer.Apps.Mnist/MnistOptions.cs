using ParameterServer.Client;
using ParameterServer.Nn;
using ParameterServer.Nn.Distributed;

namespace ParameterServer.Apps.Mnist;

/// <summary>One MNIST training run, as every worker sees it.</summary>
public sealed record MnistOptions
{
    /// <summary>A directory with the four idx files (gzip accepted).</summary>
    public required string Data { get; init; }

    /// <summary>lenet5, mlp or mlp:H1,H2,...</summary>
    public string Model { get; init; } = "lenet5";

    public int Epochs { get; init; } = 10;

    public int Batch { get; init; } = 64;

    public TrainingMode Mode { get; init; } = TrainingMode.Downpour;

    /// <summary>Sandblaster L-BFGS instead of Downpour or sync SGD (Mode, Update and the rates do not apply).</summary>
    public bool Lbfgs { get; init; }

    /// <summary>L-BFGS: the last rank sleeps this long in each work unit (a straggler, to watch backup tasks work).</summary>
    public int StragglerMs { get; init; }

    /// <summary>L-BFGS: examples per half of an iteration's overlapping batch (--batch; default 2000).</summary>
    public int LbfgsHalfBatch { get; init; } = 2000;

    /// <summary>The servers' rule: momentum, adagrad, adam or sgd.</summary>
    public string Update { get; init; } = "momentum";

    /// <summary>Learning rate; null: the rule's default here (momentum under Downpour 0.01 for LeNet-5 and 0.02 for an MLP, 0.05 in sync mode; sgd 0.05, adagrad 0.01, adam 0.001).</summary>
    public double? LearningRate { get; init; }

    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay, added to the gradients on the workers.</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>cosine (from the rate down to 0 over the run) or constant; scales the pushed gradients.</summary>
    public string Schedule { get; init; } = "cosine";

    public int FetchEvery { get; init; } = 1;

    public int PushEvery { get; init; } = 1;

    public string Compression { get; init; } = "none";

    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    /// <summary>Use only the first N training images (0: all).</summary>
    public int TrainLimit { get; init; }

    /// <summary>Use only the first N test images (0: all).</summary>
    public int TestLimit { get; init; }

    public string? ModelOut { get; init; }

    public int Seed { get; init; } = 1;

    /// <summary>The servers' update rule as a handler spec.</summary>
    public string HandlerSpec
    {
        get
        {
            string lr = (LearningRate ?? DefaultRate(Update, Mode, Model)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Update switch
            {
                "momentum" => $"momentum:lr={lr},mu={Momentum.ToString(System.Globalization.CultureInfo.InvariantCulture)}",
                "adagrad" or "adam" or "sgd" => $"{Update}:lr={lr}",
                _ => throw new ArgumentException($"--update '{Update}' is not one of momentum, adagrad, adam, sgd"),
            };
        }
    }

    // Momentum under Downpour needs a smaller rate than in one process: the other workers' pushes, applied while a
    // worker computes on the parameters it fetched, act as extra momentum (2x2 LeNet-5, 10 epochs: lr 0.05 diverged,
    // 0.02 reached 99.00%, 0.01 99.04%, 0.005 98.91%). The MLP, without the convolutions' shared weights, takes twice
    // the rate (2x2, 10 epochs: 0.01 97.98%, 0.02 98.29%). Sync mode is one process's SGD on a larger batch.
    private static double DefaultRate(string update, TrainingMode mode, string model) => update switch
    {
        "adagrad" => 0.01,
        "adam" => 0.001,
        "momentum" when mode == TrainingMode.Downpour => model.StartsWith("mlp", StringComparison.Ordinal) ? 0.02 : 0.01,
        _ => 0.05,
    };

    public void Validate()
    {
        if (Epochs < 1 || Batch < 1 || Batch > 4096)
        {
            throw new ArgumentException($"--epochs must be at least 1 and --batch in [1, 4096]; got {Epochs} and {Batch}");
        }
        if (Lbfgs && LbfgsHalfBatch < 1)
        {
            throw new ArgumentException($"--batch for L-BFGS (examples per half batch) must be at least 1, got {LbfgsHalfBatch}");
        }
        if (Schedule is not ("cosine" or "constant"))
        {
            throw new ArgumentException($"--lr-schedule '{Schedule}' is not one of cosine, constant");
        }
        if (WeightDecay < 0 || Momentum is < 0 or >= 1)
        {
            throw new ArgumentException($"--weight-decay must be >= 0 and --momentum in [0, 1); got {WeightDecay} and {Momentum}");
        }
        if (TrainLimit < 0 || TestLimit < 0)
        {
            throw new ArgumentException("--train-limit and --test-limit count images: they must not be negative");
        }
        _ = HandlerSpec; // throws for an unknown rule
        _ = Models.Create(Model, new Nn.Layers.FeatureShape(1, 28, 28), 10, 1); // throws for an unknown model
        TableSpecCheck();
    }

    private void TableSpecCheck() => new DistributedModelOptions { FetchEvery = FetchEvery, PushEvery = PushEvery, Mode = Mode }.Validate();
}
