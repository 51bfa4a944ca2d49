using System.Runtime.CompilerServices;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Client;

namespace ParameterServer.Apps.LogReg;

/// <summary>
/// OWL-QN (Andrew and Gao 2007: L-BFGS for L1/L2-regularised objectives) with every parameter-sized vector on the
/// servers. A round: every worker pulls the trial point t at its features, computes its rows' log loss and gradient
/// and pushes the gradient into a sum table; rank 0 then decides with vector operations on the servers
/// (<see cref="PsClient.RunVectorOpsAsync"/>; only scalars reach it) whether t passes the Armijo test, and either
/// accepts it (new L-BFGS pair, pseudo-gradient, direction by the two-loop recursion, the next trial point) or
/// halves the step. With l1 = 0 it is plain L-BFGS.
/// </summary>
/// <remarks>
/// The vectors are dense tables indexed by feature id (1 + the largest id over all shards), all in one placement
/// group: x (accepted point), t (trial point), the trial's gradient sum, x's smooth gradient, the pseudo-gradient,
/// the direction and the L-BFGS memory's 2m tables.
/// </remarks>
internal sealed class OwlqnSolver
{
    /// <summary>L-BFGS pairs kept (10: the usual choice; liblinear's and Spark's default too).</summary>
    public const int History = 10;

    /// <summary>Vectors on the servers, the memory's included: they bound the feature ids owlqn takes.</summary>
    public const int Vectors = 6 + (2 * History);

    /// <summary>The sufficient decrease the line search asks for (Armijo's constant).</summary>
    private const double Armijo = 1e-4;

    /// <summary>
    /// Iterations the convergence test averages over: a quasi-Newton step can gain little once and much the next, so
    /// one small decrease does not mean converged (OWL-QN's own code averages over 5 as well).
    /// </summary>
    private const int ConvergenceWindow = 5;

    /// <summary>Step halvings before the line search gives up (the objective is flat at float precision).</summary>
    private const int MaxHalvings = 30;

    private readonly PsClient _client;
    private readonly LbfgsMemory _memory;
    private readonly double _l1;
    private readonly double _l2;
    private double _objective = double.NaN;
    private readonly double[] _recent = new double[ConvergenceWindow];
    private double _step;
    private int _halvings;

    private OwlqnSolver(PsClient client, PsTable[] vectors, LbfgsMemory memory, double l1, double l2)
    {
        _client = client;
        (Weights, Trial, TrialGradient, Gradient, PseudoGradient, Direction) = (vectors[0], vectors[1], vectors[2], vectors[3], vectors[4], vectors[5]);
        _memory = memory;
        _l1 = l1;
        _l2 = l2;
    }

    /// <summary>x: the accepted point, the model.</summary>
    public PsTable Weights { get; }

    /// <summary>t: the point the workers evaluate next.</summary>
    public PsTable Trial { get; }

    /// <summary>The workers push their rows' log-loss gradient at t here (summed).</summary>
    public PsTable TrialGradient { get; }

    private PsTable Gradient { get; }

    private PsTable PseudoGradient { get; }

    private PsTable Direction { get; }

    /// <summary>Accepted points so far (the first, all zeros, is iteration 0).</summary>
    public int Iteration { get; private set; }

    /// <summary>Step halvings in the line search, over the whole run.</summary>
    public int Halvings { get; private set; }

    /// <summary>Declares the solver's tables (every worker, the same arguments).</summary>
    public static async Task<OwlqnSolver> DeclareAsync(PsClient client, string prefix, ulong features, double l1, double l2, CancellationToken cancellationToken)
    {
        var like = new TableSpec($"{prefix}.owlqn")
        {
            DenseSize = features,
            BlockKeys = (int)Math.Max(1, (features + 1023) / 1024),
            PlacementGroup = $"{prefix}.owlqn",
        };
        string[] names = ["weights", "trial", "trial-gradient", "gradient", "pseudo-gradient", "direction"];
        var vectors = new PsTable[names.Length];
        for (int i = 0; i < names.Length; i++)
        {
            vectors[i] = await client.DeclareTableAsync(like.WithName($"{prefix}.owlqn.{names[i]}"), cancellationToken).ConfigureAwait(false);
        }
        var memory = await LbfgsMemory.DeclareAsync(client, $"{prefix}.owlqn", like, History, cancellationToken).ConfigureAwait(false);
        return new OwlqnSolver(client, vectors, memory, l1, l2);
    }

    /// <summary>
    /// A worker's part of a round: its rows' summed log loss at <paramref name="weights"/> (one per column) and its
    /// gradient per column, over row ranges on every core (each with its own gradient, added up at the end).
    /// </summary>
    public static double Evaluate(RowShard data, float[] weights, float[] gradient, double[][] partials)
    {
        int parts = partials.Length;
        var losses = new double[parts];
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, part =>
        {
            int first = (int)((long)data.Rows * part / parts), end = (int)((long)data.Rows * (part + 1) / parts);
            losses[part] = EvaluateRows(data, first, end, weights, partials[part]);
        });
        for (int c = 0; c < gradient.Length; c++)
        {
            double sum = 0;
            for (int part = 0; part < parts; part++)
            {
                sum += partials[part][c];
            }
            gradient[c] = (float)sum;
        }
        return losses.Sum();
    }

    /// <summary>Rows [first, end): their summed loss, their gradient added into <paramref name="g"/> (cleared first).</summary>
    /// <remarks>
    /// One pass: a row's margin m, then e = exp(-|m|), its loss max(-z, 0) + log(1 + e) (z: m signed by the label)
    /// and its sigmoid 1 / (1 + e) or e / (1 + e), then its nonzeros again (still in cache) for the gradient. Scalar
    /// MathF here: TensorPrimitives.Exp measured 3.7x slower than MathF.Exp on this machine's CPUs.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called once per round: optimised before its first long loop
    private static double EvaluateRows(RowShard data, int first, int end, float[] weights, double[] g)
    {
        var starts = data.RowStarts;
        var columns = data.Columns;
        var values = data.Values;
        var labels = data.Labels;
        Array.Clear(g);
        double loss = 0;
        for (int i = first; i < end; i++)
        {
            int from = starts[i], to = starts[i + 1];
            float m = 0;
            for (int k = from; k < to; k++)
            {
                m += weights[columns[k]] * values[k];
            }
            float e = MathF.Exp(-MathF.Abs(m));
            float z = labels[i] > 0 ? m : -m;
            loss += MathF.Max(-z, 0) + MathF.Log(1 + e);
            float slope = ((m >= 0 ? 1 : e) / (1 + e)) - labels[i]; // d loss / d margin
            for (int k = from; k < to; k++)
            {
                g[columns[k]] += slope * values[k];
            }
        }
        return loss;
    }

    /// <summary>What rank 0 decided after a round.</summary>
    /// <param name="Stop">Training is over: x is the model.</param>
    /// <param name="Accepted">The round's trial point became x (an iteration to report).</param>
    /// <param name="Objective">x's objective.</param>
    /// <param name="Decrease">Relative decrease of the objective by this iteration (NaN for the first).</param>
    /// <param name="KktViolation">The largest |pseudo-gradient| at x: 0 at the optimum.</param>
    /// <param name="Converged">Stopped because the decrease fell below the tolerance.</param>
    public readonly record struct Decision(bool Stop, bool Accepted, double Objective, double Decrease, double KktViolation, bool Converged);

    /// <summary>
    /// Rank 0, after every worker pushed its gradient at t and <paramref name="loss"/> is their summed loss: accepts t
    /// or halves the step, and leaves the next trial point in t and a zero gradient sum behind.
    /// </summary>
    public async Task<Decision> AfterRoundAsync(double loss, double tolerance, int maxIterations, CancellationToken ct)
    {
        var x = Weights;
        var t = Trial;
        var pg = PseudoGradient;
        var norms = await Run(ct, VectorOp.Dot(t, t), VectorOp.Norm1(t), VectorOp.Dot(pg, t), VectorOp.Dot(pg, x)).ConfigureAwait(false);
        double objective = loss + (_l2 / 2 * norms[0]) + (_l1 * norms[1]);
        bool first = double.IsNaN(_objective);
        if (!first && !(objective <= _objective + (Armijo * (norms[2] - norms[3]))))
        {
            // Not enough decrease: back to x + step/2 d, and evaluate again.
            Halvings++;
            if (++_halvings > MaxHalvings)
            {
                return new Decision(Stop: true, Accepted: false, _objective, 0, double.NaN, Converged: true);
            }
            _step /= 2;
            await Run(ct, VectorOp.Scale(TrialGradient, 0)).ConfigureAwait(false);
            await MoveTrialAsync(ct).ConfigureAwait(false);
            return new Decision(Stop: false, Accepted: false, _objective, double.NaN, double.NaN, Converged: false);
        }
        // Accept t. The smooth part's gradient there: the workers' sum + l2 t. The pair: s = t - x, y = its change.
        await Run(ct, VectorOp.Axpy(TrialGradient, _l2, t)).ConfigureAwait(false);
        if (!first)
        {
            var (s, y) = _memory.Reserve();
            await Run(ct, VectorOp.Copy(s, t), VectorOp.Axpy(s, -1, x), VectorOp.Copy(y, TrialGradient), VectorOp.Axpy(y, -1, Gradient)).ConfigureAwait(false);
            await _memory.CommitAsync(ct).ConfigureAwait(false);
        }
        var ops = new List<VectorOp> { VectorOp.Copy(x, t), VectorOp.Copy(Gradient, TrialGradient), VectorOp.Scale(TrialGradient, 0), VectorOp.Copy(pg, Gradient) };
        if (_l1 > 0)
        {
            ops.Add(VectorOp.PseudoGradient(pg, x, _l1));
        }
        ops.Add(VectorOp.MaxAbs(pg));
        ops.Add(VectorOp.Dot(pg, pg));
        var after = await Run(ct, [.. ops]).ConfigureAwait(false);
        double kkt = after[0], pgNorm = Math.Sqrt(after[1]);
        double decrease = first ? double.NaN : (_objective - objective) / Math.Abs(objective);
        _objective = objective;
        _halvings = 0;
        Iteration = first ? 0 : Iteration + 1;
        // Converged when the mean relative decrease over the last few iterations is below the tolerance.
        double before = _recent[Iteration % ConvergenceWindow];
        _recent[Iteration % ConvergenceWindow] = objective;
        bool converged = pgNorm == 0 || (Iteration >= ConvergenceWindow && (before - objective) / Math.Abs(objective) / ConvergenceWindow < tolerance);
        if (converged || Iteration >= maxIterations)
        {
            return new Decision(Stop: true, Accepted: true, objective, decrease, kkt, converged);
        }
        // Direction d = -H pg, kept to the coordinates that descend; if it does not descend, steepest descent afresh.
        await Run(ct, VectorOp.Axpby(Direction, 0, pg, -1)).ConfigureAwait(false);
        await _memory.ApplyInverseHessianAsync(Direction, ct).ConfigureAwait(false);
        var projected = await Run(ct, _l1 > 0 ? [VectorOp.ProjectDescent(Direction, pg), VectorOp.Dot(Direction, pg)] : [VectorOp.Dot(Direction, pg)]).ConfigureAwait(false);
        _step = 1;
        if (_memory.Count == 0 || projected[0] >= 0)
        {
            _memory.Clear();
            await Run(ct, VectorOp.Axpby(Direction, 0, pg, -1)).ConfigureAwait(false);
            _step = 1 / pgNorm; // the first step moves a unit distance
        }
        await MoveTrialAsync(ct).ConfigureAwait(false);
        return new Decision(Stop: false, Accepted: true, objective, decrease, kkt, Converged: false);
    }

    /// <summary>t = x + step d, kept in x's orthant (with l1: a coordinate that would cross zero stops at zero).</summary>
    private async Task MoveTrialAsync(CancellationToken ct)
    {
        var ops = new List<VectorOp> { VectorOp.Copy(Trial, Weights), VectorOp.Axpy(Trial, _step, Direction) };
        if (_l1 > 0)
        {
            ops.Add(VectorOp.ProjectOrthant(Trial, Weights));
        }
        await Run(ct, [.. ops]).ConfigureAwait(false);
    }

    private Task<double[]> Run(CancellationToken ct, params VectorOp[] ops) => _client.RunVectorOpsAsync(ops, ct);
}
