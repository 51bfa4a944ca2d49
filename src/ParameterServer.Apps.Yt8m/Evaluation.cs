namespace ParameterServer.Apps.Yt8m;

/// <summary>
/// YouTube-8M's evaluation metrics, computed as its starter code does: GAP@20 (each video's top 20 predictions pooled
/// over all videos and sorted by score; the sum of precision@i x relevance_i over that list, divided by the number of
/// true labels of all videos), Hit@1 (the top prediction is a true label) and PERR (precision at the number of true
/// labels, per video, averaged).
/// </summary>
public sealed class Evaluation(int top = 20)
{
    private readonly List<(float Score, bool Relevant)> _pooled = new();
    private long _positives, _videos, _hits;
    private double _perr;
    private int[] _order = [];

    public long Videos => _videos;

    /// <summary>Adds one video: a score per label and its true labels.</summary>
    public void Add(ReadOnlySpan<float> scores, ReadOnlySpan<int> labels)
    {
        if (_order.Length != scores.Length)
        {
            _order = new int[scores.Length];
        }
        for (int i = 0; i < _order.Length; i++)
        {
            _order[i] = i;
        }
        var s = scores.ToArray();
        Array.Sort(s.Select(v => -v).ToArray(), _order); // descending by score
        var truth = new HashSet<int>(labels.ToArray());
        _videos++;
        _positives += truth.Count;
        if (truth.Count > 0 && truth.Contains(_order[0]))
        {
            _hits++;
        }
        int r = truth.Count, correct = 0;
        for (int i = 0; i < Math.Min(r, _order.Length); i++)
        {
            correct += truth.Contains(_order[i]) ? 1 : 0;
        }
        _perr += r > 0 ? (double)correct / r : 0;
        for (int i = 0; i < Math.Min(top, _order.Length); i++)
        {
            _pooled.Add((s[_order[i]], truth.Contains(_order[i])));
        }
    }

    /// <summary>Global average precision over the pooled top predictions.</summary>
    public double Gap()
    {
        if (_positives == 0)
        {
            return 0;
        }
        var sorted = _pooled.OrderByDescending(p => p.Score).ToList();
        double sum = 0;
        long relevant = 0;
        for (int i = 0; i < sorted.Count; i++)
        {
            if (sorted[i].Relevant)
            {
                relevant++;
                sum += (double)relevant / (i + 1);
            }
        }
        return sum / _positives;
    }

    public double HitAt1 => _videos == 0 ? 0 : (double)_hits / _videos;

    public double Perr => _videos == 0 ? 0 : _perr / _videos;
}
