using System.Globalization;
using ParameterServer.Apps.Lda.Sampling;

namespace ParameterServer.Apps.Lda.Data;

/// <summary>What <see cref="LdaGenerator"/> draws: documents from a known LDA model.</summary>
public sealed record LdaCorpusSpec
{
    public long Documents { get; init; } = 1_000_000;

    public int Vocabulary { get; init; } = 10_000;

    public int Topics { get; init; } = 100;

    /// <summary>Mean tokens per document (lengths are uniform in [mean/2, 3 mean/2]).</summary>
    public int MeanLength { get; init; } = 100;

    /// <summary>Dirichlet prior of each document's topic mix.</summary>
    public double Alpha { get; init; } = 0.1;

    /// <summary>Dirichlet prior of each topic's words (small: peaked topics that can be told apart).</summary>
    public double Beta { get; init; } = 0.01;

    public int Seed { get; init; } = 1;

    public void Validate()
    {
        if (Documents < 1 || Vocabulary < 2 || Topics < 1 || MeanLength < 2 || !(Alpha > 0) || !(Beta > 0))
        {
            throw new ArgumentException("gen-lda needs --docs >= 1, --vocab >= 2, --topics >= 1, --doc-length >= 2 and positive priors");
        }
    }
}

/// <summary>
/// Draws a corpus from LDA's generative process with known topics, as UCI files: PATH (docword), PATH.vocab (word
/// names w0, w1, ...) and PATH.topics (the true topic-word probabilities: K lines of V numbers), so that a trained
/// model's topics can be matched against the truth.
/// </summary>
public static class LdaGenerator
{
    public static void Write(LdaCorpusSpec spec, string path, IProgress<double>? progress = null)
    {
        spec.Validate();
        var random = new Random(spec.Seed);
        int k = spec.Topics, v = spec.Vocabulary;
        var topics = new double[k][];
        var aliases = new AliasTables(k, v);
        for (int t = 0; t < k; t++)
        {
            topics[t] = Dirichlet(random, v, spec.Beta);
            for (int w = 0; w < v; w++)
            {
                aliases.Weights[(t * v) + w] = (float)topics[t][w];
            }
            aliases.Build(t);
        }
        using (var writer = new StreamWriter(path + ".topics"))
        {
            foreach (var topic in topics)
            {
                writer.WriteLine(string.Join(' ', topic.Select(p => p.ToString("G6", CultureInfo.InvariantCulture))));
            }
        }
        File.WriteAllLines(path + ".vocab", Enumerable.Range(0, v).Select(w => $"w{w}"));

        // The header needs the number of (document, word) pairs: documents go to a temporary file first.
        string body = path + ".body";
        long pairs = 0;
        var fast = new FastRandom((ulong)spec.Seed * 31UL);
        var counts = new int[v];
        var touched = new List<int>();
        var mix = new AliasTables(1, k);
        using (var writer = new StreamWriter(body))
        {
            for (long d = 0; d < spec.Documents; d++)
            {
                var theta = Dirichlet(random, k, spec.Alpha);
                for (int t = 0; t < k; t++)
                {
                    mix.Weights[t] = (float)theta[t];
                }
                mix.Build(0);
                int length = (spec.MeanLength / 2) + random.Next(spec.MeanLength + 1);
                for (int i = 0; i < length; i++)
                {
                    int word = aliases.Sample(mix.Sample(0, ref fast), ref fast);
                    if (counts[word]++ == 0)
                    {
                        touched.Add(word);
                    }
                }
                touched.Sort();
                foreach (int word in touched)
                {
                    writer.Write((d + 1).ToString(CultureInfo.InvariantCulture));
                    writer.Write(' ');
                    writer.Write((word + 1).ToString(CultureInfo.InvariantCulture));
                    writer.Write(' ');
                    writer.WriteLine(counts[word].ToString(CultureInfo.InvariantCulture));
                    counts[word] = 0;
                    pairs++;
                }
                touched.Clear();
                if (d % 10_000 == 0)
                {
                    progress?.Report((double)d / spec.Documents);
                }
            }
        }
        using (var output = new StreamWriter(path))
        {
            output.Write(string.Create(CultureInfo.InvariantCulture, $"{spec.Documents}\n{v}\n{pairs}\n"));
            output.Flush();
            using var input = File.OpenRead(body);
            input.CopyTo(output.BaseStream);
        }
        File.Delete(body);
    }

    /// <summary>The true topics written by <see cref="Write"/>: K rows of V probabilities.</summary>
    public static double[][] ReadTopics(string path) =>
        File.ReadLines(path).Where(l => l.Length > 0).Select((line, i) =>
        {
            try
            {
                return line.Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            }
            catch (FormatException)
            {
                throw new ParameterServer.Hosting.DataFormatException($"{path}:{i + 1}: expected numbers separated by spaces");
            }
        }).ToArray();

    /// <summary>
    /// How well trained topics recover the true ones: for each true topic, the best cosine similarity with a trained
    /// topic's word distribution; their mean.
    /// </summary>
    public static double Recovery(double[][] truth, TopicCounts counts)
    {
        int k = counts.Topics;
        double total = 0;
        foreach (var topic in truth)
        {
            double best = 0;
            for (int t = 0; t < k; t++)
            {
                double dot = 0, norm = 0, truthNorm = 0;
                for (int w = 0; w < Math.Min(topic.Length, counts.Vocabulary); w++)
                {
                    double c = counts.WordTopic[(w * k) + t];
                    dot += c * topic[w];
                    norm += c * c;
                    truthNorm += topic[w] * topic[w];
                }
                if (norm > 0)
                {
                    best = Math.Max(best, dot / Math.Sqrt(norm * truthNorm));
                }
            }
            total += best;
        }
        return total / Math.Max(1, truth.Length);
    }

    /// <summary>A draw from a symmetric Dirichlet: normalised Gamma(a) draws (Marsaglia-Tsang, boosted below shape 1).</summary>
    private static double[] Dirichlet(Random random, int size, double a)
    {
        var x = new double[size];
        double sum = 0;
        for (int i = 0; i < size; i++)
        {
            x[i] = Gamma(random, a);
            sum += x[i];
        }
        if (sum == 0)
        {
            x[random.Next(size)] = 1; // every draw underflowed (tiny a): all mass on one entry
            return x;
        }
        for (int i = 0; i < size; i++)
        {
            x[i] /= sum;
        }
        return x;
    }

    private static double Gamma(Random random, double shape)
    {
        if (shape < 1)
        {
            return Gamma(random, shape + 1) * Math.Pow(random.NextDouble(), 1 / shape);
        }
        double d = shape - (1.0 / 3), c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double z, v;
            do
            {
                z = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                v = 1 + (c * z);
            }
            while (v <= 0);
            v = v * v * v;
            double u = random.NextDouble();
            if (u < 1 - (0.0331 * z * z * z * z) || Math.Log(u) < (0.5 * z * z) + (d * (1 - v + Math.Log(v))))
            {
                return d * v;
            }
        }
    }
}
