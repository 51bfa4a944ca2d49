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
