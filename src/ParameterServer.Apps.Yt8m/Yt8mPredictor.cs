using System.Globalization;
using ParameterServer.Apps.Yt8m.Data;
using ParameterServer.Nn;

namespace ParameterServer.Apps.Yt8m;

/// <summary>`pserver predict` for a model written by `pserver train yt8m --model-out`: each video's top tags by entity name.</summary>
public static class Yt8mPredictor
{
    private const string Prefix = "yt8m:";

    /// <summary>The spec a yt8m model file is written with: yt8m:logistic or yt8m:moe:E.</summary>
    public static string Spec(Yt8mOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Model == "moe" ? string.Create(CultureInfo.InvariantCulture, $"{Prefix}moe:{options.Experts}") : Prefix + options.Model;
    }

    public static bool IsYt8mSpec(string spec) => spec?.StartsWith(Prefix, StringComparison.Ordinal) == true;

    /// <summary>
    /// Scores every video of <paramref name="data"/> (a shard or a directory of them): calls <paramref name="onVideo"/>
    /// with its id and top <paramref name="top"/> (entity, probability) pairs, and returns GAP@20, Hit@1 and PERR
    /// against the videos' labels.
    /// </summary>
    public static Evaluation Predict(string modelPath, string data, IReadOnlyList<Entity> vocabulary, int top, bool skipBadRecords, Action<string, IReadOnlyList<(Entity Entity, float Probability)>> onVideo)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(onVideo);
        string spec = ModelFile.ReadSpec(modelPath);
        var parts = spec.Split(':');
        if (!IsYt8mSpec(spec) || parts.Length < 2)
        {
            throw new ArgumentException($"{modelPath} holds a '{spec}' model, not a yt8m one");
        }
        int experts = parts.Length > 2 && int.TryParse(parts[2], CultureInfo.InvariantCulture, out int e) ? e : 2;
        var model = Yt8mModels.Create(parts[1], experts, vocabulary.Count, 1);
        ModelFile.Load(modelPath, model); // refuses a model of another vocabulary size (tensor shapes differ)
        var files = Directory.Exists(data)
            ? Directory.EnumerateFiles(data, "*.tfrecord").Order(StringComparer.Ordinal).ToList()
            : File.Exists(data) ? [data] : throw new ArgumentException($"--data '{data}' is neither a .tfrecord shard nor a directory of them");
        var evaluation = new Evaluation();
        var x = new float[Video.FeatureSize];
        var order = new int[vocabulary.Count];
        var tags = new List<(Entity, float)>(top);
        using var reader = new VideoReader(files, vocabulary.Count, skipBadRecords);
        while (reader.TryRead(out var video))
        {
            video.MeanRgb.CopyTo(x, 0);
            video.MeanAudio.CopyTo(x, Video.RgbSize);
            var logits = model.Forward(x, 1);
            evaluation.Add(logits, video.Labels);
            for (int i = 0; i < order.Length; i++)
            {
                order[i] = i;
            }
            var scores = logits.ToArray();
            Array.Sort(order, (a, b) => scores[b].CompareTo(scores[a]));
            tags.Clear();
            foreach (int label in order.AsSpan(0, Math.Min(top, order.Length)))
            {
                tags.Add((vocabulary[label], 1 / (1 + MathF.Exp(-scores[label]))));
            }
            onVideo(video.Id, tags);
        }
        return evaluation;
    }
}
