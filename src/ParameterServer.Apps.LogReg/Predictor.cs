using ParameterServer.Apps.LogReg.Data;

namespace ParameterServer.Apps.LogReg;

/// <summary>Scores a LIBSVM file with a model file in this process (`pserver predict`).</summary>
public static class Predictor
{
    /// <summary>Metrics of the model on the data, and how many distinct test features the model has no weight for.</summary>
    public static (BinaryMetrics Metrics, long Rows, int UnknownFeatures) Score(ModelFile model, string dataPath, bool skipBadLines = false)
    {
        var metrics = new BinaryMetrics();
        var unknown = new HashSet<ulong>();
        long rows = ForEachRow(model, dataPath, skipBadLines, (label, z) => metrics.Add(label, 1 / (1 + Math.Exp(-z))), unknown);
        return (metrics, rows, unknown.Count);
    }

    /// <summary>
    /// The regularised objective of the model on the data: sum of log losses + l1 |w|_1 + l2/2 |w|^2 (what
    /// `--solver bpg` minimises; liblinear's primal divided by its C), for comparing solvers on the same footing.
    /// </summary>
    public static double Objective(ModelFile model, string dataPath, double l1, double l2)
    {
        ArgumentNullException.ThrowIfNull(model);
        double loss = 0;
        ForEachRow(model, dataPath, skipBadLines: false, (label, z) =>
        {
            double m = label > 0 ? z : -z;
            loss += m > 0 ? Math.Log(1 + Math.Exp(-m)) : -m + Math.Log(1 + Math.Exp(m));
        }, unknown: null);
        double absSum = 0, squares = 0;
        foreach (float w in model.Weights.Values)
        {
            absSum += Math.Abs(w);
            squares += (double)w * w;
        }
        return loss + (l1 * absSum) + (l2 / 2 * squares);
    }

    /// <summary>Calls <paramref name="row"/> with each row's label and margin w.x; returns the rows read.</summary>
    private static long ForEachRow(ModelFile model, string dataPath, bool skipBadLines, Action<float, double> row, HashSet<ulong>? unknown)
    {
        using var reader = new LibSvmReader(dataPath, 0, 1, new LibSvmOptions { HashBits = model.HashBits, SkipBadLines = skipBadLines });
        var batch = new MiniBatch();
        long rows = 0;
        while (reader.ReadBatch(batch, 1024))
        {
            var starts = batch.RowStarts;
            var keys = batch.Keys;
            var values = batch.Values;
            for (int r = 0; r < batch.Rows; r++)
            {
                double z = 0;
                for (int j = starts[r]; j < starts[r + 1]; j++)
                {
                    if (model.Weights.TryGetValue(keys[j], out float w))
                    {
                        z += w * values[j];
                    }
                    else if (keys[j] != LibSvmReader.BiasKey)
                    {
                        unknown?.Add(keys[j]);
                    }
                }
                row(batch.Labels[r], z);
            }
            rows += batch.Rows;
        }
        return rows;
    }

    /// <summary>Cosine similarity of two weight vectors over the union of their keys.</summary>
    public static double Cosine(IReadOnlyDictionary<ulong, float> a, IReadOnlyDictionary<ulong, float> b)
    {
        double dot = 0;
        double na = 0;
        double nb = 0;
        foreach (var (key, wa) in a)
        {
            na += wa * wa;
            if (b.TryGetValue(key, out float wb))
            {
                dot += wa * wb;
            }
        }
        foreach (var (_, wb) in b)
        {
            nb += wb * wb;
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }
}
