using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>`train logreg --solver owlqn` (L-BFGS/OWL-QN with its vectors on the servers) on a9a through real local clusters.</summary>
[Collection("processes")]
public sealed class OwlqnTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);

    private static List<JsonElement> Lines(Pserver run, bool iterations) => run.StdoutLines
        .Where(l => l.StartsWith("{\"app\":\"logreg\"", StringComparison.Ordinal))
        .Select(l => JsonDocument.Parse(l).RootElement)
        .Where(e => e.TryGetProperty("iteration", out _) == iterations)
        .ToList();

    [Theory]
    [InlineData("0", "1")]
    [InlineData("1", "0")]
    public async Task Owlqn_on_two_servers_and_two_workers_follows_a_single_process_owlqn_iteration_by_iteration(string l1, string l2)
    {
        const int iterations = 15;
        using var run = await Pserver.RunAsync(Limit, ["train", "logreg", "--data", SharedData.A9a, "--solver", "owlqn", "--l1", l1, "--l2", l2,
            "--max-iterations", iterations.ToString(CultureInfo.InvariantCulture), "--servers", "2", "--workers", "2", "--json"]);
        Assert.True(run.ExitCode == 0, run.Describe());
        var distributed = Lines(run, iterations: true).Select(e => e.GetProperty("objective").GetDouble()).ToArray();
        var local = ReferenceOwlqn.Run(SharedData.A9a, double.Parse(l1, CultureInfo.InvariantCulture), double.Parse(l2, CultureInfo.InvariantCulture), iterations);
        output.WriteLine(string.Join("\n", distributed.Zip(local, (a, b) => $"{a:0.0000}  {b:0.0000}")));
        Assert.Equal(iterations + 1, distributed.Length); // iteration 0 (all weights zero) and 15 more
        for (int i = 0; i < distributed.Length; i++)
        {
            // float32 vectors on the servers against float64 here: the paths agree to about 10^-7 (seen: 3e-8).
            Assert.True(Math.Abs(distributed[i] - local[i]) <= 1e-5 * local[i], $"iteration {i}: distributed {distributed[i]}, single process {local[i]}");
        }
        Assert.True(distributed[^1] < distributed[0] * 0.5, string.Join(", ", distributed));
    }

    [Fact]
    public async Task Owlqn_converges_and_refuses_feature_ids_it_cannot_hold_densely()
    {
        using var run = await Pserver.RunAsync(Limit, "train", "logreg", "--data", SharedData.A9a, "--test", SharedData.A9aTest, "--solver", "owlqn", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var final = Lines(run, iterations: false).Single();
        Assert.True(final.GetProperty("converged").GetBoolean(), run.Stdout);
        Assert.True(final.GetProperty("test_accuracy").GetDouble() >= 0.845 && final.GetProperty("test_auc").GetDouble() >= 0.90, run.Stdout);

        string huge = Path.Combine(Path.GetTempPath(), $"ps-owlqn-huge-{Guid.NewGuid():N}.libsvm");
        try
        {
            await File.WriteAllLinesAsync(huge, ["+1 1:1 40000000:1", "-1 2:1"]);
            using var refused = await Pserver.RunAsync(Limit, "train", "logreg", "--data", huge, "--solver", "owlqn");
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("--hash-bits", refused.Stderr + refused.Stdout, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(huge);
        }
    }

    /// <summary>
    /// OWL-QN in one process, in float64 over dense arrays: the same rules as the servers' (m = 10, a first step of
    /// unit length, Armijo halving), written out plainly.
    /// </summary>
    private static class ReferenceOwlqn
    {
        /// <summary>The objective at iteration 0..<paramref name="iterations"/>.</summary>
        public static double[] Run(string path, double l1, double l2, int iterations)
        {
            var rows = new List<(int[] Index, double[] Value, bool Positive)>();
            int size = 1;
            foreach (string line in File.ReadLines(path))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var features = parts.Skip(1).Select(p => p.Split(':')).ToArray();
                int[] index = [0, .. features.Select(p => int.Parse(p[0], CultureInfo.InvariantCulture))]; // key 0: the bias
                double[] value = [1, .. features.Select(p => double.Parse(p[1], CultureInfo.InvariantCulture))];
                size = Math.Max(size, index.Max() + 1);
                rows.Add((index, value, double.Parse(parts[0], CultureInfo.InvariantCulture) > 0));
            }
            (double F, double[] G) Evaluate(double[] w)
            {
                double f = 0;
                var g = new double[size];
                foreach (var (index, value, positive) in rows)
                {
                    double m = 0;
                    for (int k = 0; k < index.Length; k++)
                    {
                        m += w[index[k]] * value[k];
                    }
                    double z = positive ? m : -m;
                    f += z > 0 ? Math.Log(1 + Math.Exp(-z)) : -z + Math.Log(1 + Math.Exp(z));
                    double coefficient = (1 / (1 + Math.Exp(-m))) - (positive ? 1 : 0);
                    for (int k = 0; k < index.Length; k++)
                    {
                        g[index[k]] += coefficient * value[k];
                    }
                }
                for (int j = 0; j < size; j++)
                {
                    f += (l2 / 2 * w[j] * w[j]) + (l1 * Math.Abs(w[j]));
                    g[j] += l2 * w[j]; // the smooth part's gradient
                }
                return (f, g);
            }
            static double Dot(double[] a, double[] b) => a.Select((x, i) => x * b[i]).Sum();
            var x = new double[size];
            var (fx, gx) = Evaluate(x);
            var objectives = new List<double> { fx };
            var pairs = new List<(double[] S, double[] Y, double Rho)>();
            for (int it = 1; it <= iterations; it++)
            {
                var pg = gx.Select((g, j) => x[j] > 0 ? g + l1 : x[j] < 0 ? g - l1 : g + l1 < 0 ? g + l1 : g - l1 > 0 ? g - l1 : 0).ToArray();
                var d = pg.Select(v => -v).ToArray();
                var alpha = new double[pairs.Count];
                for (int i = pairs.Count - 1; i >= 0; i--)
                {
                    alpha[i] = pairs[i].Rho * Dot(pairs[i].S, d);
                    d = d.Select((v, j) => v - (alpha[i] * pairs[i].Y[j])).ToArray();
                }
                if (pairs.Count > 0)
                {
                    var (s, y, _) = pairs[^1];
                    double scale = Dot(s, y) / Dot(y, y);
                    d = d.Select(v => v * scale).ToArray();
                }
                for (int i = 0; i < pairs.Count; i++)
                {
                    double beta = pairs[i].Rho * Dot(pairs[i].Y, d);
                    d = d.Select((v, j) => v + ((alpha[i] - beta) * pairs[i].S[j])).ToArray();
                }
                if (l1 > 0)
                {
                    d = d.Select((v, j) => v * pg[j] < 0 ? v : 0).ToArray();
                }
                double step = 1;
                if (pairs.Count == 0 || Dot(d, pg) >= 0)
                {
                    pairs.Clear();
                    d = pg.Select(v => -v).ToArray();
                    step = 1 / Math.Sqrt(Dot(pg, pg));
                }
                double[] t;
                double ft;
                double[] gt;
                while (true)
                {
                    t = x.Select((v, j) => v + (step * d[j])).ToArray();
                    if (l1 > 0)
                    {
                        t = t.Select((v, j) => v * x[j] < 0 ? 0 : v).ToArray();
                    }
                    (ft, gt) = Evaluate(t);
                    if (ft <= fx + (1e-4 * Dot(pg, t.Select((v, j) => v - x[j]).ToArray())))
                    {
                        break;
                    }
                    step /= 2;
                }
                var sNew = t.Select((v, j) => v - x[j]).ToArray();
                var yNew = gt.Select((v, j) => v - gx[j]).ToArray();
                double sy = Dot(sNew, yNew);
                if (sy > 1e-10)
                {
                    if (pairs.Count == 10)
                    {
                        pairs.RemoveAt(0);
                    }
                    pairs.Add((sNew, yNew, 1 / sy));
                }
                (x, fx, gx) = (t, ft, gt);
                objectives.Add(fx);
            }
            return [.. objectives];
        }
    }
}
