using System.Globalization;
using ParameterServer.Nn.Layers;

namespace ParameterServer.Nn;

/// <summary>The models the CLI trains, by spec: <c>lenet5</c>, or <c>mlp</c> / <c>mlp:H1,H2,...</c> (hidden widths).</summary>
public static class Models
{
    /// <summary>The MLP's hidden layers when the spec names none.</summary>
    public static IReadOnlyList<int> DefaultHidden { get; } = [512, 256];

    /// <summary>
    /// LeNet-5 (LeCun et al. 1998) as it is trained today: 5x5 convolutions of 6 and 16 filters (the first padded to
    /// keep 28x28), ReLU and 2x2 max-pooling after each, then 120, 84 and the classes. About 61,700 parameters.
    /// </summary>
    public static Sequential LeNet5(FeatureShape input, int classes, int maxBatch) => new(input, maxBatch,
        new Conv2d(6, 5, padding: 2), new Relu(), new MaxPool2d(2),
        new Conv2d(16, 5), new Relu(), new MaxPool2d(2),
        new Dense(120), new Relu(),
        new Dense(84), new Relu(),
        new Dense(classes));

    /// <summary>A multi-layer perceptron: ReLU hidden layers, each followed by dropout when <paramref name="dropout"/> > 0.</summary>
    public static Sequential Mlp(FeatureShape input, int classes, int maxBatch, IReadOnlyList<int> hidden, float dropout = 0f)
    {
        var layers = new List<Layer>();
        foreach (int width in hidden)
        {
            layers.Add(new Dense(width));
            layers.Add(new Relu());
            if (dropout > 0f)
            {
                layers.Add(new Dropout(dropout));
            }
        }
        layers.Add(new Dense(classes));
        return new Sequential(input, maxBatch, [.. layers]);
    }

    /// <summary>Builds the model a spec names; throws <see cref="ArgumentException"/> saying what is accepted.</summary>
    public static Sequential Create(string spec, FeatureShape input, int classes, int maxBatch)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string trimmed = spec.Trim().ToLowerInvariant();
        if (trimmed == "lenet5")
        {
            return LeNet5(input, classes, maxBatch);
        }
        if (trimmed == "mlp")
        {
            return Mlp(input, classes, maxBatch, DefaultHidden);
        }
        if (trimmed.StartsWith("mlp:", StringComparison.Ordinal))
        {
            var widths = new List<int>();
            foreach (string part in trimmed[4..].Split(',', StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int width) || width < 1)
                {
                    throw new ArgumentException($"model '{spec}': hidden width '{part}' is not a positive integer (e.g. mlp:512,256)");
                }
                widths.Add(width);
            }
            return Mlp(input, classes, maxBatch, widths);
        }
        throw new ArgumentException($"unknown model '{spec}': use lenet5, mlp or mlp:H1,H2,... (hidden layer widths)");
    }
}
