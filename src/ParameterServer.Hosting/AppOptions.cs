using System.CommandLine;

namespace ParameterServer.Hosting;

/// <summary>
/// Options that more than one app takes (`pserver worker` and `pserver local` carry every app's options, so one name
/// is one option). Each app reads them with its own default where a value is absent.
/// </summary>
public static class AppOptions
{
    /// <summary>--data.</summary>
    public static readonly Option<string?> Data = PsOptions.Create<string?>("--data", null, "Training data: logreg a LIBSVM text file (gzip accepted), mnist a directory of the idx files");

    /// <summary>--epochs; "auto" reads as <see cref="AutoEpochs"/>.</summary>
    public static readonly Option<int> Epochs = AcceptAuto(PsOptions.Create("--epochs", 10, "Passes over the training data (logreg online: auto stops when the log loss of a held-out part, --validation-fraction, stops improving)"));

    /// <summary>The value of `--epochs auto`: apps that cannot stop on their own refuse it.</summary>
    public const int AutoEpochs = 0;

    private static Option<int> AcceptAuto(Option<int> option)
    {
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (text.Equals("auto", StringComparison.OrdinalIgnoreCase))
            {
                return AutoEpochs;
            }
            if (int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int epochs))
            {
                return epochs;
            }
            result.AddError($"--epochs takes a whole number or auto, not '{text}'");
            return default;
        };
        return option;
    }

    /// <summary>--batch.</summary>
    public static readonly Option<int?> Batch = PsOptions.Create<int?>("--batch", null, "Examples per minibatch (logreg 100, mnist 64; mnist --optimizer lbfgs: examples per half of an iteration's batch, 2000)");

    /// <summary>--optimizer.</summary>
    public static readonly Option<string?> Optimizer = PsOptions.Create<string?>("--optimizer", null, "logreg: ftrl (default), adagrad or sgd on the servers; mnist: downpour (default), sync or lbfgs");

    /// <summary>--test.</summary>
    public static readonly Option<string?> Test = PsOptions.Create<string?>("--test", null, "Held-out data: logreg a LIBSVM file evaluated after every epoch, lda a corpus scored by perplexity");

    /// <summary>--lr.</summary>
    public static readonly Option<double?> LearningRate = PsOptions.Create<double?>("--lr", null, "Learning rate; each app and update rule has its own default");

    /// <summary>--model-out.</summary>
    public static readonly Option<string?> ModelOut = PsOptions.Create<string?>("--model-out", null, "Write the trained model to this file");

    /// <summary>--model.</summary>
    public static readonly Option<string?> Model = PsOptions.Create<string?>("--model", null, "mnist: lenet5 (default), mlp (784-512-256-10) or mlp:H1,H2,... (hidden widths); yt8m: logistic (default)");

    /// <summary>--compress.</summary>
    public static readonly Option<string> Compress = PsOptions.Create("--compress", "none", "Value encoding of pushes and pull answers: none, or zero, lz, fp16, bf16, topk[:F], 1bit joined by '+' (zero and lz are lossless)");
}
