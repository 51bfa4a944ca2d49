using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Client;
using ParameterServer.Core.Cluster;

namespace ParameterServer.Apps.LogReg;

/// <summary>
/// The paper's delayed block proximal gradient (section 5.1, Algorithm 3) for L1/L2-regularised logistic regression,
/// one worker's part. The features are split into blocks by key hash; an iteration visits every block once. For a
/// block, each worker computes over all its rows the block's gradient g and a diagonal curvature bound u and
/// push-pulls them to a sync table: the servers sum every worker's rows and take the proximal Newton step
/// (<see cref="ParameterServer.Extensions.UpdateHandlers.ProximalNewton"/>), answering each worker with the new
/// weights once all have pushed. With delay tau a worker starts the next tau blocks before that answer is in; with
/// tau = 0 the iteration is sequential block coordinate descent, whose objective cannot rise.
/// Each worker keeps its rows' margins w.x current by applying every answered block's weight changes.
/// </summary>
/// <remarks>
/// u_j = sum_i p_i (1 - p_i) x_ij^2 n_i, where n_i is how many of row i's features lie in the blocks that move
/// without seeing each other (the block and the delay's blocks on either side): by Cauchy-Schwarz the diagonal then
/// bounds their joint Hessian, so coordinates stepping together cannot overshoot together.
/// The KKT filter (on with L1) skips features at zero whose last gradient lies well inside [-l1, l1]: they would
/// stay at zero. Every few iterations, and before stopping, an iteration runs unfiltered so none stays skipped wrongly.
/// </remarks>
internal sealed class BlockProximalSolver
{
    /// <summary>An iteration with the filter on every this many; the others may skip features.</summary>
    private const int UnfilteredEvery = 5;

    private readonly ShardMatrix _data;
    private readonly PsTable _table;
    private readonly int _delay;
    private readonly double _l1;
    private readonly int[][] _blockColumns;
    private readonly ulong[][] _blockKeys;
    private readonly double[] _margins;
    private readonly float[] _weights;
    private readonly float[] _lastGradients;
    private readonly byte[] _windowCounts;
    private readonly float[] _startWeights;
    private readonly double[] _startMargins;
    private readonly float[][] _pushed;
    private readonly ulong[][] _pushedKeys;
    private readonly float[][] _answers;
    private readonly int[] _pushedCount;
    private readonly int[][] _pushedColumns;
    private readonly long[] _tickets;

    public BlockProximalSolver(ShardMatrix data, PsTable table, int blocks, int delay, double l1)
    {
        _data = data;
        _table = table;
        _delay = delay;
        _l1 = l1;
        var byBlock = new List<int>[blocks];
        for (int b = 0; b < blocks; b++)
        {
            byBlock[b] = new List<int>();
        }
        for (int c = 0; c < data.Keys.Length; c++)
        {
            byBlock[BlockOf(data.Keys[c], blocks)].Add(c);
        }
        _blockColumns = byBlock.Select(l => l.ToArray()).ToArray();
        _blockKeys = _blockColumns.Select(cols => cols.Select(c => data.Keys[c]).ToArray()).ToArray();
        _pushed = _blockColumns.Select(cols => new float[2 * cols.Length]).ToArray();
        _pushedKeys = _blockColumns.Select(cols => new ulong[cols.Length]).ToArray();
        _pushedColumns = _blockColumns.Select(cols => new int[cols.Length]).ToArray();
        _answers = _blockColumns.Select(cols => new float[2 * cols.Length]).ToArray();
        _pushedCount = new int[blocks];
        _tickets = new long[blocks];
        _margins = new double[data.Rows];
        _weights = new float[data.Keys.Length];
        _lastGradients = new float[data.Keys.Length];
        _windowCounts = CountWindows(data, _blockColumns, delay);
        _startWeights = new float[data.Keys.Length];
        _startMargins = new double[data.Rows];
    }

    /// <summary>
    /// For every nonzero (in column order), how many of its row's features lie in the blocks that move without
    /// seeing its block's step: the block and <paramref name="delay"/> blocks on either side. The windows are the
    /// same every iteration, so this is counted once (capped at 255: a looser bound only shortens steps).
    /// </summary>
    private static byte[] CountWindows(ShardMatrix data, int[][] blockColumns, int delay)
    {
        var counts = new byte[data.Nonzeros];
        var perRow = new int[data.Rows];
        var starts = data.ColumnStarts;
        var rows = data.RowIndices;
        void Add(int block, int sign)
        {
            foreach (int c in blockColumns[block])
            {
                for (int k = starts[c]; k < starts[c + 1]; k++)
                {
                    perRow[rows[k]] += sign;
                }
            }
        }
        int blocks = blockColumns.Length;
        for (int b = 0; b < Math.Min(blocks, delay + 1); b++)
        {
            Add(b, +1);
        }
        for (int b = 0; b < blocks; b++)
        {
            foreach (int c in blockColumns[b])
            {
                for (int k = starts[c]; k < starts[c + 1]; k++)
                {
                    counts[k] = (byte)Math.Min(255, perRow[rows[k]]);
                }
            }
            if (b - delay >= 0)
            {
                Add(b - delay, -1);
            }
            if (b + delay + 1 < blocks)
            {
                Add(b + delay + 1, +1);
            }
        }
        return counts;
    }

    /// <summary>Which block a key belongs to: the same on every worker.</summary>
    public static int BlockOf(ulong key, int blocks) => (int)(Hashing.Mix64(key ^ 0x9E3779B97F4A7C15UL) % (ulong)blocks);

    /// <summary>Whether <paramref name="iteration"/> (from 1) runs with every feature.</summary>
    public static bool Unfiltered(int iteration, bool filter, bool verifying) =>
        !filter || iteration == 1 || verifying || iteration % UnfilteredEvery == 0;

    /// <summary>Features this worker skipped in the last iteration (the KKT filter).</summary>
    public long Skipped { get; private set; }

    /// <summary>
    /// One iteration over every block; returns once every answer is in and applied to the margins. All workers run
    /// the same iterations with the same <paramref name="filtered"/>: the servers sum one push per worker per block.
    /// </summary>
    public void Iterate(bool filtered, CancellationToken cancellationToken)
    {
        int blocks = _blockColumns.Length;
        Skipped = 0;
        for (int b = 0; b < blocks; b++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int waitFor = b - _delay - 1;
            if (waitFor >= 0)
            {
                Absorb(waitFor);
            }
            Compute(b, filtered);
            int count = _pushedCount[b];
            _tickets[b] = _table.PushPull(_pushedKeys[b].AsSpan(0, count), _pushed[b].AsSpan(0, 2 * count), _answers[b].AsMemory(0, 2 * count));
        }
        for (int b = Math.Max(0, blocks - _delay - 1); b < blocks; b++)
        {
            Absorb(b);
        }
    }

    /// <summary>Step lengths tried along an iteration's whole move (1 is where the iteration ended).</summary>
    public static readonly double[] StepLengths = [2, 4, 8];

    /// <summary>Remembers where an iteration starts, for <see cref="LineObjectives"/>.</summary>
    public void MarkStart()
    {
        Array.Copy(_weights, _startWeights, _weights.Length);
        Array.Copy(_margins, _startMargins, _margins.Length);
    }

    /// <summary>
    /// This worker's share of the objective at start + a (end - start) for each of <see cref="StepLengths"/>: its
    /// rows' log losses (the margins move along the same line) plus the regulariser of the keys it owns. CD's
    /// iterations on correlated features keep moving the same way; a longer step along that way saves many.
    /// </summary>
    public void LineObjectives(bool[] owns, double l1, double l2, Span<double> objectives)
    {
        objectives.Clear();
        var labels = _data.Labels;
        for (int i = 0; i < labels.Length; i++)
        {
            double start = _startMargins[i], move = _margins[i] - start;
            if (labels[i] <= 0)
            {
                (start, move) = (-start, -move);
            }
            for (int a = 0; a < StepLengths.Length; a++)
            {
                double z = start + (StepLengths[a] * move);
                objectives[a] += z > 0 ? Math.Log(1 + Math.Exp(-z)) : -z + Math.Log(1 + Math.Exp(z)); // as Loss() computes it
            }
        }
        for (int c = 0; c < _weights.Length; c++)
        {
            if (!owns[c])
            {
                continue;
            }
            double start = _startWeights[c], move = _weights[c] - start;
            for (int a = 0; a < StepLengths.Length; a++)
            {
                double w = start + (StepLengths[a] * move);
                objectives[a] += (l1 * Math.Abs(w)) + (l2 / 2 * w * w);
            }
        }
    }

    /// <summary>
    /// Moves to start + <paramref name="step"/> (end - start): the margins here, the weights here and, for the keys
    /// this worker owns, on the servers (a sync round every worker takes part in, owners pushing [w, -1]).
    /// </summary>
    public void Extrapolate(double step, bool[] owns)
    {
        for (int i = 0; i < _margins.Length; i++)
        {
            _margins[i] = _startMargins[i] + (step * (_margins[i] - _startMargins[i]));
        }
        var keys = new List<ulong>();
        var rows = new List<float>();
        for (int c = 0; c < _weights.Length; c++)
        {
            _weights[c] = (float)(_startWeights[c] + (step * (_weights[c] - _startWeights[c])));
            if (owns[c])
            {
                keys.Add(_data.Keys[c]);
                rows.Add(_weights[c]);
                rows.Add(-1);
            }
        }
        _table.Wait(_table.Push(keys.ToArray(), rows.ToArray()));
    }

    /// <summary>This worker's summed log loss at the current weights.</summary>
    public double Loss()
    {
        double sum = 0;
        var labels = _data.Labels;
        for (int i = 0; i < labels.Length; i++)
        {
            double z = labels[i] > 0 ? _margins[i] : -_margins[i];
            sum += z > 0 ? Math.Log(1 + Math.Exp(-z)) : -z + Math.Log(1 + Math.Exp(z));
        }
        return sum;
    }

    /// <summary>
    /// This worker's share of the objective's regulariser (l1 |w|_1 + l2/2 |w|^2), its nonzero weights and its
    /// largest KKT violation (the distance of a coordinate's subgradient from zero, at the gradient the servers last
    /// applied), over the columns it <paramref name="owns"/>: each key is owned by one worker, so the shares add up.
    /// </summary>
    public (double Penalty, long Nonzero, double KktViolation) Regulariser(bool[] owns, double l1, double l2)
    {
        double penalty = 0, violation = 0;
        long nonzero = 0;
        for (int c = 0; c < _weights.Length; c++)
        {
            if (!owns[c])
            {
                continue;
            }
            double w = _weights[c], g = _lastGradients[c] + (l2 * w);
            penalty += (l1 * Math.Abs(w)) + (l2 / 2 * w * w);
            if (w != 0)
            {
                nonzero++;
                violation = Math.Max(violation, Math.Abs(g + (l1 * Math.Sign(w))));
            }
            else
            {
                violation = Math.Max(violation, Math.Abs(g) - l1);
            }
        }
        return (penalty, nonzero, violation);
    }

    private void Compute(int block, bool filtered)
    {
        var columns = _blockColumns[block];
        var starts = _data.ColumnStarts;
        var rows = _data.RowIndices;
        var values = _data.Values;
        var labels = _data.Labels;
        var windowCounts = _windowCounts;
        var pushed = _pushed[block];
        var keys = _pushedKeys[block];
        var pushedColumns = _pushedColumns[block];
        int count = 0;
        double keep = 0.9 * _l1;
        foreach (int c in columns)
        {
            if (filtered && _weights[c] == 0 && Math.Abs(_lastGradients[c]) < keep)
            {
                Skipped++;
                continue;
            }
            double g = 0, u = 0;
            for (int k = starts[c]; k < starts[c + 1]; k++)
            {
                int i = rows[k];
                float p = 1f / (1f + MathF.Exp((float)-_margins[i]));
                float x = values[k];
                g += (p - labels[i]) * x;
                u += p * (1 - p) * x * x * windowCounts[k];
            }
            keys[count] = _data.Keys[c];
            pushedColumns[count] = c;
            pushed[2 * count] = (float)g;
            pushed[(2 * count) + 1] = (float)u;
            count++;
        }
        _pushedCount[block] = count;
    }

    /// <summary>Waits for a block's answer (its round applied on every server) and moves the margins by its weight changes.</summary>
    private void Absorb(int block)
    {
        _table.Wait(_tickets[block]);
        var answer = _answers[block];
        var columns = _pushedColumns[block];
        var starts = _data.ColumnStarts;
        var rows = _data.RowIndices;
        var values = _data.Values;
        for (int n = 0; n < _pushedCount[block]; n++)
        {
            int c = columns[n];
            float updated = answer[2 * n];
            _lastGradients[c] = answer[(2 * n) + 1];
            double delta = updated - _weights[c];
            if (delta == 0)
            {
                continue;
            }
            _weights[c] = updated;
            for (int k = starts[c]; k < starts[c + 1]; k++)
            {
                _margins[rows[k]] += delta * values[k];
            }
        }
    }
}
