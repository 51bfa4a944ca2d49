using System.Diagnostics;
using ParameterServer.Apps.Yt8m.Data;
using ParameterServer.Nn;
using ParameterServer.Nn.Layers;

namespace ParameterServer.Apps.Yt8m;

/// <summary>The video-level models of the YouTube-8M starter code, built for a batch size, and what one step of them costs here.</summary>
public static class Yt8mModels
{
    /// <summary>YouTube-8M's vocabulary size (vocabulary.csv's rows).</summary>
    public const int Labels = 3862;

    public static Sequential Create(string model, int experts, int labels, int batch) =>
        new(new FeatureShape(Video.FeatureSize, 1, 1), batch, model switch
        {
            "logistic" => new Dense(labels),
            "moe" => new MixtureOfExperts(labels, experts),
            _ => throw new ArgumentException($"--model '{model}' is not a yt8m model: use logistic or moe"),
        });

    /// <summary>
    /// Sets the output biases so that the untrained model predicts each label's frequency in <paramref name="videoLabels"/>
    /// instead of 0.5: otherwise every one of the 3,862 outputs starts with a large gradient towards "no", and AdaGrad's
    /// accumulators keep that burst, slowing every later step. For the mixture the experts carry the prior (the gates
    /// start even, the dummy expert's share included).
    /// </summary>
    internal static void SetPriorBiases(Sequential model, IReadOnlyList<int[]> videoLabels)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(videoLabels);
        int labels = model.OutputShape.Size;
        var counts = new double[labels];
        foreach (var video in videoLabels)
        {
            foreach (int label in video)
            {
                counts[label]++;
            }
        }
        var moe = model.Layers.OfType<MixtureOfExperts>().FirstOrDefault();
        int experts = moe?.Experts ?? 1;
        string suffix = moe is null ? ".bias" : ".experts.bias";
        var bias = model.Parameters.Single(t => t.Name.EndsWith(suffix, StringComparison.Ordinal) && t.Value.Length == labels * experts).Value.Span;
        double scale = moe is null ? 1 : (experts + 1.0) / experts; // the dummy expert's gate takes 1/(E+1) of p
        for (int c = 0; c < labels; c++)
        {
            // Half a video for labels never seen, so that none starts at certainty.
            double p = Math.Min(0.99, scale * Math.Max(counts[c], 0.5) / Math.Max(1, videoLabels.Count));
            bias.Slice(c * experts, experts).Fill((float)Math.Log(p / (1 - p)));
        }
    }

    /// <summary>Median milliseconds of one training step (forward and backward of a batch of random videos) on this thread, after a warm-up step.</summary>
    public static double MeasureStepMs(Sequential model, int steps = 5)
    {
        ArgumentNullException.ThrowIfNull(model);
        model.Initialize(1);
        int batch = model.MaxBatch, labels = model.OutputShape.Size;
        var random = new Random(1);
        var x = new float[batch * Video.FeatureSize];
        var y = new float[batch * labels];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = random.NextSingle() - 0.5f;
        }
        for (int b = 0; b < batch; b++)
        {
            y[(b * labels) + random.Next(labels)] = 1;
        }
        model.ComputeGradients(x, y, batch);
        var times = new double[steps];
        for (int s = 0; s < steps; s++)
        {
            long start = Stopwatch.GetTimestamp();
            model.ComputeGradients(x, y, batch);
            times[s] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[steps / 2];
    }
}
