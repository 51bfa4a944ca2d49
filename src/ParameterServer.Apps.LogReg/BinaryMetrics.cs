namespace ParameterServer.Apps.LogReg;

/// <summary>
/// Log loss, accuracy and AUC of binary predictions. AUC comes from score histograms (4096 bins per class),
/// so metrics of many workers merge by adding vectors: that is how they travel through a sum table.
/// </summary>
public sealed class BinaryMetrics
{
    public const int Bins = 4096;

    /// <summary>Floats in <see cref="WriteTo"/>'s vector: loss, count, correct, then both histograms.</summary>
    public const int VectorLength = 3 + 2 * Bins;

    private readonly double[] _positives = new double[Bins];
    private readonly double[] _negatives = new double[Bins];

    public double LossSum { get; private set; }

    public double Count { get; private set; }

    public double Correct { get; private set; }

    public double LogLoss => Count > 0 ? LossSum / Count : double.NaN;

    public double Accuracy => Count > 0 ? Correct / Count : double.NaN;

    public void Add(float label, double probability)
    {
        double p = Math.Clamp(probability, 1e-15, 1 - 1e-15);
        LossSum += label > 0 ? -Math.Log(p) : -Math.Log(1 - p);
        Count++;
        if ((probability >= 0.5) == (label > 0))
        {
            Correct++;
        }
        int bin = Math.Min(Bins - 1, (int)(probability * Bins));
        (label > 0 ? _positives : _negatives)[bin]++;
    }

    /// <summary>Area under the ROC curve: the chance a positive scores above a negative (ties in a bin count half).</summary>
    public double Auc
    {
        get
        {
            double positives = _positives.Sum();
            double negatives = _negatives.Sum();
            if (positives == 0 || negatives == 0)
            {
                return double.NaN;
            }
            double area = 0;
            double negativesBelow = 0;
            for (int b = 0; b < Bins; b++)
            {
                area += _positives[b] * (negativesBelow + 0.5 * _negatives[b]);
                negativesBelow += _negatives[b];
            }
            return area / (positives * negatives);
        }
    }

    public void WriteTo(Span<float> vector)
    {
        vector[0] = (float)LossSum;
        vector[1] = (float)Count;
        vector[2] = (float)Correct;
        for (int b = 0; b < Bins; b++)
        {
            vector[3 + b] = (float)_positives[b];
            vector[3 + Bins + b] = (float)_negatives[b];
        }
    }

    public static BinaryMetrics ReadFrom(ReadOnlySpan<float> vector)
    {
        var m = new BinaryMetrics { LossSum = vector[0], Count = vector[1], Correct = vector[2] };
        for (int b = 0; b < Bins; b++)
        {
            m._positives[b] = vector[3 + b];
            m._negatives[b] = vector[3 + Bins + b];
        }
        return m;
    }

    public void Clear()
    {
        LossSum = Count = Correct = 0;
        Array.Clear(_positives);
        Array.Clear(_negatives);
    }
}
