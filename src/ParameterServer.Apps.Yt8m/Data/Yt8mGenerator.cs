using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;

namespace ParameterServer.Apps.Yt8m.Data;

/// <summary>What `pserver data gen-yt8m` makes.</summary>
public sealed record Yt8mSpec
{
    public int Videos { get; init; } = 100_000;

    public int Shards { get; init; } = 8;

    /// <summary>Videos of the validation shards (scored by the true model for the best achievable GAP).</summary>
    public int ValidationVideos { get; init; } = 5_000;

    /// <summary>Standard deviation of the noise of each latent coordinate (the signal of one label has unit norm).</summary>
    public double Noise { get; init; } = 0.15;

    /// <summary>Dimensions of the latent space the labels' prototypes live in (the 1,152 features embed it).</summary>
    public int LatentDimensions { get; init; } = 128;

    public int Seed { get; init; } = 1;
}

/// <summary>
/// Video-level YouTube-8M data from a known latent model. Labels: a video takes a vertical (weighted by its entities'
/// TrainVideoCount), a first entity of it, then more (3 per video on average, as YouTube-8M has), each from the same
/// vertical with probability 0.8 (so Pet and Animal co-occur) or from all entities, always weighted by TrainVideoCount.
/// Features: each entity has a random unit prototype in a latent space of k dimensions (128; YouTube-8M's features
/// are PCA-compressed embeddings too); a video's latent point is the sum of its labels' prototypes plus Gaussian noise,
/// and its 1,152 features (mean_rgb + mean_audio) are that point through a fixed orthonormal embedding plus a little
/// isotropic noise (0.01). The true model scores label e by its log-odds given the latent point z, taking the other
/// labels' prototypes as noise: (u_e . z - 1/2) / noise^2 + logit(prior_e). It is linear in the features, so the best
/// GAP a per-label model reaches is about that model's GAP on the validation shards, which the generator computes and
/// reports.
/// </summary>
public static class Yt8mGenerator
{
    private const double SameVertical = 0.8;
    private const double MeanLabels = 3.0;
    private const double FeatureNoise = 0.01;

    /// <summary>Writes DIR/train-NNNN.tfrecord, DIR/validate-0000.tfrecord and DIR/truth.json; returns the true model's metrics on the validation videos.</summary>
    public static (double Gap, double HitAt1, double Perr) Write(Yt8mSpec spec, IReadOnlyList<Entity> vocabulary, string directory, IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (spec.Videos < 1 || spec.Shards < 1 || spec.ValidationVideos < 1 || !(spec.Noise > 0) || spec.LatentDimensions is < 2 or > Video.FeatureSize)
        {
            throw new ArgumentException($"--videos, --shards and --validation-videos must be at least 1, --noise positive and --latent-dimensions in [2, {Video.FeatureSize}], got {spec.Videos}, {spec.Shards}, {spec.ValidationVideos}, {spec.Noise} and {spec.LatentDimensions}");
        }
        Directory.CreateDirectory(directory);
        var random = new Random(spec.Seed);
        int labels = vocabulary.Count, dim = Video.FeatureSize, k = spec.LatentDimensions;
        var prototypes = new float[labels * k];
        for (int e = 0; e < labels; e++)
        {
            RandomUnit(prototypes.AsSpan(e * k, k), random);
        }
        var sampler = new LabelSampler(vocabulary);
        var model = new LatentModel(Embedding(k, random), prototypes, sampler.Prior, spec.Noise);
        long written = 0, total = spec.Videos + (long)spec.ValidationVideos;
        for (int shard = 0; shard < spec.Shards; shard++)
        {
            int count = (spec.Videos / spec.Shards) + (shard < spec.Videos % spec.Shards ? 1 : 0);
            WriteShard(Path.Combine(directory, $"train-{shard:D4}.tfrecord"), count, $"t{shard}-");
        }
        var truth = new Evaluation();
        var scores = new float[labels];
        var validation = new List<Video>();
        WriteShard(Path.Combine(directory, "validate-0000.tfrecord"), spec.ValidationVideos, "v-", validation);
        foreach (var video in validation)
        {
            model.TrueScores(video, scores);
            truth.Add(scores, video.Labels);
        }
        var result = (truth.Gap(), truth.HitAt1, truth.Perr);
        File.WriteAllText(Path.Combine(directory, "truth.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["videos"] = spec.Videos,
            ["validation_videos"] = spec.ValidationVideos,
            ["labels"] = labels,
            ["noise"] = spec.Noise,
            ["latent_dimensions"] = k,
            ["seed"] = spec.Seed,
            ["true_model_gap"] = Math.Round(result.Item1, 4),
            ["true_model_hit_at_1"] = Math.Round(result.HitAt1, 4),
            ["true_model_perr"] = Math.Round(result.Perr, 4),
        }));
        return result;

        void WriteShard(string path, int count, string prefix, List<Video>? keep = null)
        {
            using var file = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
            var x = new float[dim];
            for (int i = 0; i < count; i++)
            {
                int[] videoLabels = sampler.Draw(random);
                model.Features(videoLabels, random, x);
                var video = new Video(prefix + i.ToString(CultureInfo.InvariantCulture), videoLabels, x[..Video.RgbSize], x[Video.RgbSize..]);
                keep?.Add(video);
                TfRecords.Write(file, VideoExamples.Serialize(video));
                if (++written % 10_000 == 0)
                {
                    progress?.Report((double)written / total);
                }
            }
            file.Dispose();
            File.Move(path + ".tmp", path, overwrite: true);
        }
    }

    /// <summary>k orthonormal rows of 1,152 features (Gram-Schmidt on Gaussian vectors): the latent space's place among the features.</summary>
    private static float[] Embedding(int k, Random random)
    {
        int dim = Video.FeatureSize;
        var rows = new float[k * dim];
        for (int i = 0; i < k; i++)
        {
            var row = rows.AsSpan(i * dim, dim);
            for (int d = 0; d < dim; d++)
            {
                row[d] = (float)Gaussian(random);
            }
            for (int j = 0; j < i; j++)
            {
                var previous = rows.AsSpan(j * dim, dim);
                TensorPrimitives.MultiplyAdd(previous, -TensorPrimitives.Dot(previous, row), row, row);
            }
            TensorPrimitives.Divide(row, TensorPrimitives.Norm(row), row);
        }
        return rows;
    }

    private static void RandomUnit(Span<float> w, Random random)
    {
        for (int d = 0; d < w.Length; d++)
        {
            w[d] = (float)Gaussian(random);
        }
        TensorPrimitives.Divide(w, TensorPrimitives.Norm(w), w);
    }

    private static double Gaussian(Random random)
    {
        // Box-Muller.
        double u = 1 - random.NextDouble(), v = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v);
    }

    /// <summary>The generator's latent model: how a video's labels make its features, and the true model that inverts it.</summary>
    private sealed class LatentModel(float[] embedding, float[] prototypes, double[] prior, double noise)
    {
        private readonly int _k = embedding.Length / Video.FeatureSize;

        /// <summary>x = E^T (sum of the labels' prototypes + noise) + a little isotropic noise.</summary>
        public void Features(int[] labels, Random random, Span<float> x)
        {
            Span<float> z = stackalloc float[_k];
            for (int i = 0; i < _k; i++)
            {
                z[i] = (float)(Gaussian(random) * noise);
            }
            foreach (int e in labels)
            {
                TensorPrimitives.Add(z, prototypes.AsSpan(e * _k, _k), z);
            }
            for (int d = 0; d < x.Length; d++)
            {
                x[d] = (float)(Gaussian(random) * FeatureNoise);
            }
            for (int i = 0; i < _k; i++)
            {
                TensorPrimitives.MultiplyAdd(embedding.AsSpan(i * x.Length, x.Length), z[i], x, x);
            }
        }

        /// <summary>Every label's log-odds given the video's latent point z = E x.</summary>
        public void TrueScores(Video video, Span<float> scores)
        {
            float[] x = [.. video.MeanRgb, .. video.MeanAudio];
            Span<float> z = stackalloc float[_k];
            for (int i = 0; i < _k; i++)
            {
                z[i] = TensorPrimitives.Dot(embedding.AsSpan(i * x.Length, x.Length), x);
            }
            double variance = noise * noise;
            for (int e = 0; e < scores.Length; e++)
            {
                double dot = TensorPrimitives.Dot(prototypes.AsSpan(e * _k, _k), z);
                double p = Math.Clamp(prior[e], 1e-9, 1 - 1e-9);
                scores[e] = (float)(((dot - 0.5) / variance) + Math.Log(p / (1 - p)));
            }
        }
    }

    /// <summary>Draws a video's labels: correlated within a vertical, weighted by TrainVideoCount.</summary>
    private sealed class LabelSampler
    {
        private readonly double[] _all;                  // cumulative weights over all entities
        private readonly Dictionary<string, (int[] Members, double[] Cumulative)> _verticals = new();
        private readonly string[] _verticalNames;
        private readonly double[] _verticalCumulative;
        private readonly IReadOnlyList<Entity> _vocabulary;

        public LabelSampler(IReadOnlyList<Entity> vocabulary)
        {
            _vocabulary = vocabulary;
            _all = Cumulative(vocabulary.Select(e => (double)Math.Max(1, e.TrainVideoCount)));
            foreach (var group in vocabulary.GroupBy(e => e.Vertical).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                _verticals[group.Key] = (group.Select(e => e.Index).ToArray(), Cumulative(group.Select(e => (double)Math.Max(1, e.TrainVideoCount))));
            }
            _verticalNames = [.. _verticals.Keys];
            _verticalCumulative = Cumulative(_verticalNames.Select(v => _verticals[v].Cumulative[^1]));
            // A label's prior: its share of all labels, times the mean number of labels per video.
            double sum = _all[^1];
            Prior = vocabulary.Select(e => Math.Min(0.5, Math.Max(1, e.TrainVideoCount) / sum * MeanLabels)).ToArray();
        }

        /// <summary>P(a video carries label e), as the true model assumes.</summary>
        public double[] Prior { get; }

        public int[] Draw(Random random)
        {
            string vertical = _verticalNames[Pick(_verticalCumulative, random)];
            var (members, cumulative) = _verticals[vertical];
            var labels = new List<int> { members[Pick(cumulative, random)] };
            int want = 1 + Poisson(MeanLabels - 1, random);
            for (int tries = 0; labels.Count < want && tries < 50; tries++)
            {
                int e = random.NextDouble() < SameVertical ? members[Pick(cumulative, random)] : Pick(_all, random);
                if (!labels.Contains(e))
                {
                    labels.Add(e);
                }
            }
            labels.Sort();
            return [.. labels];
        }

        private static double[] Cumulative(IEnumerable<double> weights)
        {
            var list = new List<double>();
            double sum = 0;
            foreach (double w in weights)
            {
                sum += w;
                list.Add(sum);
            }
            return [.. list];
        }

        private static int Pick(double[] cumulative, Random random)
        {
            int i = Array.BinarySearch(cumulative, random.NextDouble() * cumulative[^1]);
            return Math.Min(i < 0 ? ~i : i, cumulative.Length - 1);
        }

        private static int Poisson(double mean, Random random)
        {
            double limit = Math.Exp(-mean), product = random.NextDouble();
            int n = 0;
            while (product > limit)
            {
                product *= random.NextDouble();
                n++;
            }
            return n;
        }
    }
}
