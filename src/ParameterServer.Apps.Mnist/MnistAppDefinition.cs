using System.CommandLine;
using ParameterServer.Apps.Mnist;
using ParameterServer.Hosting;
using ParameterServer.Nn.Distributed;

[assembly: PsApp(typeof(MnistAppDefinition))]

namespace ParameterServer.Apps.Mnist;

/// <summary>`--app mnist` and `pserver train mnist`: its options, its factory, and the training job on a local cluster.</summary>
public sealed class MnistAppDefinition : IPsAppDefinition, IPsTrainable
{
    /// <summary>--model.</summary>
    public static Option<string?> Model => AppOptions.Model;

    /// <summary>--update.</summary>
    public static readonly Option<string> Update = PsOptions.Create("--update", "momentum", "mnist: the servers' update rule: momentum (default), adagrad (DistBelief's), adam or sgd");

    /// <summary>--momentum.</summary>
    public static readonly Option<double> Momentum = PsOptions.Create("--momentum", 0.9, "mnist: momentum of --update momentum");

    /// <summary>--weight-decay.</summary>
    public static readonly Option<double> WeightDecay = PsOptions.Create("--weight-decay", 5e-4, "mnist: L2 weight decay, added to the gradients on the workers");

    /// <summary>--lr-schedule.</summary>
    public static readonly Option<string> Schedule = PsOptions.Create("--lr-schedule", "cosine", "mnist: cosine (the rate falls to 0 over the run) or constant");

    /// <summary>--n-fetch.</summary>
    public static readonly Option<int> FetchEvery = PsOptions.Create("--n-fetch", 1, "mnist, downpour: steps between fetches of the parameters");

    /// <summary>--n-push.</summary>
    public static readonly Option<int> PushEvery = PsOptions.Create("--n-push", 1, "mnist, downpour: steps whose gradients go out in one push");

    /// <summary>--train-limit.</summary>
    public static readonly Option<int> TrainLimit = PsOptions.Create("--train-limit", 0, "mnist: train on the first N images only (0: all)");

    /// <summary>--test-limit.</summary>
    public static readonly Option<int> TestLimit = PsOptions.Create("--test-limit", 0, "mnist: evaluate on the first N test images only (0: all)");

    /// <summary>--straggler-ms.</summary>
    public static readonly Option<int> StragglerMs = PsOptions.Create("--straggler-ms", 0, "mnist, lbfgs: the last rank sleeps this long in each work unit (a straggler, to watch backup tasks)");

    /// <inheritdoc/>
    public string Name => "mnist";

    /// <inheritdoc/>
    public IReadOnlyList<Option> Options { get; } =
        [AppOptions.Data, AppOptions.Epochs, AppOptions.Batch, AppOptions.Optimizer, AppOptions.LearningRate, AppOptions.ModelOut, AppOptions.Compress,
         Model, Update, Momentum, WeightDecay, Schedule, FetchEvery, PushEvery, TrainLimit, TestLimit, StragglerMs];

    /// <inheritdoc/>
    public string TrainDescription => "Train LeNet-5 or an MLP on MNIST with its parameters on a local cluster of real processes (Downpour SGD, synchronous, or Sandblaster L-BFGS)";

    /// <inheritdoc/>
    public IEnumerable<Option> TrainOptions => [];

    /// <inheritdoc/>
    public IPsApp Create(ParseResult p) => new MnistApp(OptionsFrom(p));

    /// <inheritdoc/>
    public IEnumerable<string> Forward(ParseResult p)
    {
        var args = new List<string>();
        AppRegistry.AddArgument(args, AppOptions.Data.Name, p.GetValue(AppOptions.Data) is { } data ? Path.GetFullPath(data) : null);
        AppRegistry.AddArgument(args, AppOptions.Epochs.Name, p.GetValue(AppOptions.Epochs));
        AppRegistry.AddArgument(args, AppOptions.Batch.Name, p.GetValue(AppOptions.Batch));
        AppRegistry.AddArgument(args, AppOptions.Optimizer.Name, p.GetValue(AppOptions.Optimizer));
        AppRegistry.AddArgument(args, AppOptions.LearningRate.Name, p.GetValue(AppOptions.LearningRate));
        AppRegistry.AddArgument(args, AppOptions.ModelOut.Name, p.GetValue(AppOptions.ModelOut) is { } model ? Path.GetFullPath(model) : null);
        AppRegistry.AddArgument(args, AppOptions.Compress.Name, p.GetValue(AppOptions.Compress));
        AppRegistry.AddArgument(args, Model.Name, p.GetValue(Model));
        AppRegistry.AddArgument(args, Update.Name, p.GetValue(Update));
        AppRegistry.AddArgument(args, Momentum.Name, p.GetValue(Momentum));
        AppRegistry.AddArgument(args, WeightDecay.Name, p.GetValue(WeightDecay));
        AppRegistry.AddArgument(args, Schedule.Name, p.GetValue(Schedule));
        AppRegistry.AddArgument(args, FetchEvery.Name, p.GetValue(FetchEvery));
        AppRegistry.AddArgument(args, PushEvery.Name, p.GetValue(PushEvery));
        AppRegistry.AddArgument(args, TrainLimit.Name, p.GetValue(TrainLimit));
        AppRegistry.AddArgument(args, TestLimit.Name, p.GetValue(TestLimit));
        AppRegistry.AddArgument(args, StragglerMs.Name, p.GetValue(StragglerMs));
        return args;
    }

    /// <summary>The app's options from the parsed command line, validated.</summary>
    public static MnistOptions OptionsFrom(ParseResult p)
    {
        string optimizer = (p.GetValue(AppOptions.Optimizer) ?? "downpour").ToLowerInvariant();
        var mode = optimizer switch
        {
            "downpour" or "lbfgs" => TrainingMode.Downpour,
            "sync" => TrainingMode.Sync,
            _ => throw new ArgumentException($"--optimizer '{optimizer}' is not one of downpour, sync, lbfgs"),
        };
        bool lbfgs = optimizer == "lbfgs";
        var options = new MnistOptions
        {
            Data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("mnist needs --data DIR: a directory with the four MNIST idx files (gzip accepted)"),
            Model = p.GetValue(Model) ?? "lenet5",
            Epochs = p.GetValue(AppOptions.Epochs),
            Batch = lbfgs ? 64 : p.GetValue(AppOptions.Batch) ?? 64,
            Mode = mode,
            Lbfgs = lbfgs,
            LbfgsHalfBatch = lbfgs ? p.GetValue(AppOptions.Batch) ?? 2000 : 2000,
            Update = p.GetValue(Update)!.ToLowerInvariant(),
            LearningRate = p.GetValue(AppOptions.LearningRate),
            Momentum = p.GetValue(Momentum),
            WeightDecay = p.GetValue(WeightDecay),
            Schedule = p.GetValue(Schedule)!.ToLowerInvariant(),
            FetchEvery = p.GetValue(FetchEvery),
            PushEvery = p.GetValue(PushEvery),
            Compression = p.GetValue(AppOptions.Compress)!,
            Consistency = Client.Consistency.Parse(p.GetValue(PsOptions.Consistency)!),
            TrainLimit = p.GetValue(TrainLimit),
            TestLimit = p.GetValue(TestLimit),
            StragglerMs = Math.Max(0, p.GetValue(StragglerMs)),
            ModelOut = p.GetValue(AppOptions.ModelOut),
        };
        options.Validate();
        return options;
    }

    /// <inheritdoc/>
    public async Task<int> TrainAsync(ParseResult p, CancellationToken ct)
    {
        var options = OptionsFrom(p); // checked once here, not in every worker
        if (!Directory.Exists(options.Data))
        {
            throw new ArgumentException($"--data '{options.Data}' is not a directory (it should hold train-images-idx3-ubyte[.gz] and the three other MNIST files)");
        }
        var args = new List<string>();
        var forwarded = AppRegistry.Forward(p, this);
        args.AddRange(forwarded);
        return await LocalCluster.TrainAsync(p, args, "train", ct);
    }
}
