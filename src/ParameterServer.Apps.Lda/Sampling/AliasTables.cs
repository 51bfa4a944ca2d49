namespace ParameterServer.Apps.Lda.Sampling;

/// <summary>
/// Walker's alias tables, one per word, over the topics: a draw costs one random bucket and one comparison whatever
/// the number of topics. Built from weights once per pass (the proposal may be stale within the pass: the
/// Metropolis-Hastings step corrects for that). The weights are kept: the acceptance ratio needs them.
/// </summary>
public sealed class AliasTables
{
    private readonly int _topics;
    private readonly float[] _threshold;
    private readonly int[] _alias;
    private readonly int[] _small;
    private readonly int[] _large;
    private readonly double[] _scaled;

    public AliasTables(int rows, int topics)
    {
        _topics = topics;
        _threshold = new float[checked(rows * topics)];
        _alias = new int[rows * topics];
        Weights = new float[rows * topics];
        _small = new int[topics];
        _large = new int[topics];
        _scaled = new double[topics];
    }

    /// <summary>The weights each row was built from (unnormalised), row-major.</summary>
    public float[] Weights { get; }

    /// <summary>Builds row <paramref name="row"/> from its weights (set in <see cref="Weights"/> first); Vose's method, O(K).</summary>
    public void Build(int row)
    {
        int k = _topics;
        var weights = Weights.AsSpan(row * k, k);
        var threshold = _threshold.AsSpan(row * k, k);
        var alias = _alias.AsSpan(row * k, k);
        double sum = 0;
        foreach (float w in weights)
        {
            sum += w;
        }
        int small = 0, large = 0;
        for (int i = 0; i < k; i++)
        {
            _scaled[i] = weights[i] * k / sum;
            if (_scaled[i] < 1)
            {
                _small[small++] = i;
            }
            else
            {
                _large[large++] = i;
            }
        }
        while (small > 0 && large > 0)
        {
            int s = _small[--small];
            int l = _large[--large];
            threshold[s] = (float)_scaled[s];
            alias[s] = l;
            _scaled[l] = _scaled[l] + _scaled[s] - 1;
            if (_scaled[l] < 1)
            {
                _small[small++] = l;
            }
            else
            {
                _large[large++] = l;
            }
        }
        while (large > 0)
        {
            int l = _large[--large];
            threshold[l] = 1;
            alias[l] = l;
        }
        while (small > 0)
        {
            int s = _small[--small]; // rounding left-overs
            threshold[s] = 1;
            alias[s] = s;
        }
    }

    /// <summary>A topic drawn from row <paramref name="row"/>'s weights.</summary>
    public int Sample(int row, ref FastRandom random)
    {
        int bucket = random.Next(_topics);
        int at = (row * _topics) + bucket;
        return random.NextFloat() < _threshold[at] ? bucket : _alias[at];
    }
}
