using ParameterServer.Core.Cluster;

namespace ParameterServer.Scheduler.Elastic;

/// <summary>Greedy rebalancing of virtual nodes: add or take away one server's virtual node at a time, the change that most lowers the largest ring share, while one does.</summary>
internal sealed record RebalancePlan(Dictionary<int, int> Points, double Before, double After, int Moves, double MovedFraction)
{
    public static RebalancePlan Compute(Dictionary<int, int> current, int virtualNodes)
    {
        Dictionary<int, double> Shares(Dictionary<int, int> p) => new HashRing(p.Select(e => (e.Key, e.Value)).ToArray(), virtualNodes).Shares();
        double Largest(Dictionary<int, double> shares) => shares.Count == 0 ? 1 : shares.Values.Max() * shares.Count;
        double Spread(Dictionary<int, double> shares) => shares.Values.Sum(v => v * v);
        // Greedy descent on the sum of squared shares (smooth, so single steps help), keeping the point on the way
        // where the largest share was smallest: that is what a server's load is.
        var points = new Dictionary<int, int>(current);
        double before = Largest(Shares(points));
        double best = before;
        var bestPoints = points;
        int moves = 0;
        int bestMoves = 0;
        double spread = Spread(Shares(points));
        for (int step = 0; step < 8 * points.Count && best > 1.02; step++)
        {
            Dictionary<int, int>? chosen = null;
            double chosenLargest = 0;
            foreach (int id in points.Keys)
            {
                foreach (int delta in (ReadOnlySpan<int>)[-1, 1])
                {
                    int count = points[id] + delta;
                    if (count < 1 || count > 4 * virtualNodes)
                    {
                        continue;
                    }
                    var trial = new Dictionary<int, int>(points) { [id] = count };
                    var shares = Shares(trial);
                    double trialSpread = Spread(shares);
                    if (trialSpread < spread - 1e-12)
                    {
                        spread = trialSpread;
                        chosen = trial;
                        chosenLargest = Largest(shares);
                    }
                }
            }
            if (chosen is null)
            {
                break;
            }
            points = chosen;
            moves++;
            if (chosenLargest < best)
            {
                best = chosenLargest;
                bestPoints = points;
                bestMoves = moves;
            }
        }
        points = bestPoints;
        moves = bestMoves;
        var from = new HashRing(current.Select(e => (e.Key, e.Value)).ToArray(), virtualNodes);
        var to = new HashRing(points.Select(e => (e.Key, e.Value)).ToArray(), virtualNodes);
        return new RebalancePlan(points, before, best, moves, moves == 0 ? 0 : HashRing.MovedFraction(from, to));
    }
}
