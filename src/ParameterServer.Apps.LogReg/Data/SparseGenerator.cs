using System.Globalization;
using System.Text;

namespace ParameterServer.Apps.LogReg.Data;

/// <summary>Settings of the synthetic sparse data generator (`pserver data gen-sparse`).</summary>
public sealed record SparseDataSpec
{
    public long Rows { get; init; } = 100_000;

    public int Features { get; init; } = 100_000;

    /// <summary>Exponent of the power law of feature frequencies (click logs: about 1.1).</summary>
    public double Zipf { get; init; } = 1.1;

    /// <summary>Nonzeros per row on average.</summary>
    public int FeaturesPerRow { get; init; } = 20;

    public int Seed { get; init; } = 1;

    public void Validate()
    {
        if (Rows < 1 || Features < 1 || FeaturesPerRow < 1 || Zipf <= 0)
        {
            throw new ArgumentException($"gen-sparse needs --rows >= 1, --features >= 1, --per-row >= 1 and --zipf > 0 (got {Rows}, {Features}, {FeaturesPerRow}, {Zipf})");
        }
    }
}

/// <summary>
/// Makes LIBSVM data like click logs: feature ids drawn from a Zipf law (a few very frequent, a long tail),
/// binary values, and labels drawn from a logistic model with known true weights (written next to the data
/// in the model format, so a trained model can be compared with the truth).
/// </summary>
public static class SparseGenerator
{
    /// <summary>The true weight of feature i (1-based) and the bias: deterministic in (seed, i), about 30% nonzero.</summary>
    public static float TrueWeight(int seed, ulong feature)
    {
        ulong h = ParameterServer.Core.Cluster.Hashing.Mix64(feature * 0x9E3779B97F4A7C15UL ^ (ulong)seed);
        if ((h & 0xff) >= 77)
        {
            return 0; // about 70% of features carry no signal: what L1 should find
        }
        double u = ((h >> 11) & ((1UL << 40) - 1)) / (double)(1UL << 40);
        return (float)((u * 2 - 1) * 1.5);
    }

    /// <summary>
    /// Writes <c>path</c> and the true weights to <c>path.weights</c>. Rows come from <paramref name="rowSeed"/>
    /// (default: the spec's seed), so a test set can share the true weights and differ in its rows.
    /// </summary>
    public static void Write(SparseDataSpec spec, string path, IProgress<double>? progress = null, int? rowSeed = null)
    {
        spec.Validate();
        var random = new Random(rowSeed ?? spec.Seed);
        var zipf = new ZipfSampler(spec.Features, spec.Zipf);
        var seen = new HashSet<int>();
        var row = new List<int>();
        string temp = path + ".tmp";
        using (var writer = new StreamWriter(temp, false, new UTF8Encoding(false), 1 << 20))
        {
            var line = new StringBuilder(256);
            for (long r = 0; r < spec.Rows; r++)
            {
                int count = Math.Max(1, (int)Math.Round(spec.FeaturesPerRow * (0.5 + random.NextDouble())));
                seen.Clear();
                row.Clear();
                for (int k = 0; k < count * 3 && row.Count < count; k++)
                {
                    int f = zipf.Sample(random);
                    if (seen.Add(f))
                    {
                        row.Add(f);
                    }
                }
                row.Sort();
                double z = TrueWeight(spec.Seed, LibSvmReader.BiasKey);
                foreach (int f in row)
                {
                    z += TrueWeight(spec.Seed, (ulong)f);
                }
                bool positive = random.NextDouble() < 1 / (1 + Math.Exp(-z));
                line.Clear().Append(positive ? "+1" : "-1");
                foreach (int f in row)
                {
                    line.Append(' ').Append(f.ToString(CultureInfo.InvariantCulture)).Append(":1");
                }
                writer.WriteLine(line);
                if ((r & 0xffff) == 0)
                {
                    progress?.Report(r / (double)spec.Rows);
                }
            }
        }
        File.Move(temp, path, overwrite: true);
        WriteTrueModel(spec, path + ".weights");
    }

    private static void WriteTrueModel(SparseDataSpec spec, string path)
    {
        var keys = new ulong[spec.Features + 1];
        var weights = new float[spec.Features + 1];
        for (int i = 0; i <= spec.Features; i++)
        {
            keys[i] = (ulong)i;
            weights[i] = TrueWeight(spec.Seed, (ulong)i);
        }
        ModelFile.Write(path, hashBits: 0, keys, weights);
    }

    /// <summary>Samples 1..n with P(k) proportional to 1/k^s in O(1): Vose's alias method.</summary>
    private sealed class ZipfSampler
    {
        private readonly double[] _keep;
        private readonly int[] _alias;

        public ZipfSampler(int n, double s)
        {
            var weight = new double[n];
            double sum = 0;
            for (int k = 0; k < n; k++)
            {
                weight[k] = 1 / Math.Pow(k + 1, s);
                sum += weight[k];
            }
            _keep = new double[n];
            _alias = new int[n];
            var small = new Stack<int>();
            var large = new Stack<int>();
            for (int k = 0; k < n; k++)
            {
                weight[k] = weight[k] * n / sum; // mean 1
                (weight[k] < 1 ? small : large).Push(k);
            }
            while (small.Count > 0 && large.Count > 0)
            {
                int less = small.Pop();
                int more = large.Pop();
                _keep[less] = weight[less];
                _alias[less] = more;
                weight[more] += weight[less] - 1;
                (weight[more] < 1 ? small : large).Push(more);
            }
            foreach (int k in small.Concat(large))
            {
                _keep[k] = 1; // rounding leftovers
            }
        }

        public int Sample(Random random)
        {
            int k = random.Next(_keep.Length);
            return (random.NextDouble() < _keep[k] ? k : _alias[k]) + 1;
        }
    }
}
