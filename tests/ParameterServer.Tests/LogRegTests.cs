using ParameterServer.Hosting;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Apps.LogReg;

namespace ParameterServer.Tests;

public sealed class LogRegTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-logreg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Histogram_auc_matches_the_exact_pairwise_auc()
    {
        var random = new Random(11);
        var metrics = new BinaryMetrics();
        var samples = new List<(float Label, double P)>();
        for (int i = 0; i < 3000; i++)
        {
            float label = random.Next(2);
            double p = Math.Clamp(random.NextDouble() * 0.6 + label * 0.3, 0, 1);
            samples.Add((label, p));
            metrics.Add(label, p);
        }
        double pairs = 0;
        double wins = 0;
        foreach (var pos in samples.Where(s => s.Label > 0))
        {
            foreach (var neg in samples.Where(s => s.Label == 0))
            {
                pairs++;
                wins += pos.P > neg.P ? 1 : pos.P == neg.P ? 0.5 : 0;
            }
        }
        Assert.Equal(wins / pairs, metrics.Auc, 3);
        Assert.Equal(samples.Count(s => (s.P >= 0.5) == (s.Label > 0)) / 3000.0, metrics.Accuracy, 10);
    }

    [Fact]
    public void Metrics_of_shards_merge_by_adding_their_vectors()
    {
        var a = new BinaryMetrics();
        var b = new BinaryMetrics();
        var both = new BinaryMetrics();
        var random = new Random(2);
        for (int i = 0; i < 1000; i++)
        {
            float label = random.Next(2);
            double p = random.NextDouble();
            (i % 2 == 0 ? a : b).Add(label, p);
            both.Add(label, p);
        }
        var va = new float[BinaryMetrics.VectorLength];
        var vb = new float[BinaryMetrics.VectorLength];
        a.WriteTo(va);
        b.WriteTo(vb);
        var merged = BinaryMetrics.ReadFrom(va.Zip(vb, (x, y) => x + y).ToArray());
        Assert.Equal(both.Auc, merged.Auc, 6);
        Assert.Equal(both.LogLoss, merged.LogLoss, 4);
        Assert.Equal(both.Accuracy, merged.Accuracy, 6);
    }

    [Fact]
    public void Model_file_round_trips_nonzero_weights_exactly()
    {
        string path = Path.Combine(_dir, "m.txt");
        ModelFile.Write(path, 18, [0, 5, 9, 1UL << 40], [0.1f, 0f, -3.4028235e38f, 1e-7f]);
        var model = ModelFile.Read(path);
        Assert.Equal(18, model.HashBits);
        Assert.Equal(3, model.Weights.Count);
        Assert.Equal(-3.4028235e38f, model.Weights[9]);
        Assert.Equal(1e-7f, model.Weights[1UL << 40]);
        Assert.False(model.Weights.ContainsKey(5));
    }

    [Theory]
    [InlineData("not a model\n", 1, "not a pserver logreg model")]
    [InlineData("# pserver logreg model v1\nhash_bits x\n", 2, "expected 'hash_bits <integer>'")]
    [InlineData("# pserver logreg model v1\nhash_bits 0\nbias_key 0\nweights 2\n1 0.5\n", 6, "file ends before weight 2 of 2")]
    [InlineData("# pserver logreg model v1\nhash_bits 0\nbias_key 0\nweights 1\n1 abc\n", 5, "expected 'key weight'")]
    public void A_corrupt_model_names_the_line(string text, int line, string problem)
    {
        string path = Path.Combine(_dir, "bad-model.txt");
        File.WriteAllText(path, text);
        var ex = Assert.Throws<DataFormatException>(() => ModelFile.Read(path));
        Assert.StartsWith($"{path}:{line}: {problem}", ex.Message);
    }

    [Fact]
    public void Generator_is_deterministic_and_its_true_model_beats_chance()
    {
        var spec = new SparseDataSpec { Rows = 4000, Features = 500, Zipf = 1.1, FeaturesPerRow = 10, Seed = 3 };
        string a = Path.Combine(_dir, "a.libsvm");
        string b = Path.Combine(_dir, "b.libsvm");
        SparseGenerator.Write(spec, a);
        SparseGenerator.Write(spec, b);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        var (metrics, rows, _) = Predictor.Score(ModelFile.Read(a + ".weights"), a);
        Assert.Equal(4000, rows);
        Assert.InRange(metrics.Auc, 0.7, 1.0);
        // Power law: feature 1 is far more frequent than feature 100.
        string text = File.ReadAllText(a);
        int Count(string token) => text.Split(' ').Count(t => t.StartsWith(token, StringComparison.Ordinal));
        Assert.True(Count("1:") > 5 * Count("100:"));
    }

    [Fact]
    public void The_local_baseline_learns_a9a_style_data()
    {
        var spec = new SparseDataSpec { Rows = 20_000, Features = 200, Zipf = 0.8, FeaturesPerRow = 12, Seed = 5 };
        string path = Path.Combine(_dir, "train.libsvm");
        SparseGenerator.Write(spec, path);
        var options = new LogRegOptions { Data = path, Solver = "online" };
        var trainer = new LogRegTrainer(new LocalWeights(options.HandlerSpec), batchSize: 100, prefetch: false);
        EpochResult first = default;
        EpochResult last = default;
        for (int epoch = 0; epoch < 3; epoch++)
        {
            using var reader = new LibSvmReader(path, 0, 1);
            last = trainer.Train(reader, 0, null, CancellationToken.None);
            first = epoch == 0 ? last : first;
        }
        Assert.Equal(20_000, last.Rows);
        Assert.True(last.LossSum / last.Rows < first.LossSum / first.Rows, "training should lower the loss");
        using var eval = new LibSvmReader(path, 0, 1);
        var metrics = new BinaryMetrics();
        trainer.Evaluate(eval, metrics, CancellationToken.None);
        var (truth, _, _) = Predictor.Score(ModelFile.Read(path + ".weights"), path);
        Assert.True(metrics.Auc > truth.Auc - 0.03, $"trained AUC {metrics.Auc} vs true model {truth.Auc}");
    }
}
