using System.Diagnostics;
using System.Numerics.Tensors;
using ParameterServer.Client;

namespace ParameterServer.Nn.Distributed;

/// <summary>How <see cref="SandblasterLbfgs"/> trains.</summary>
public sealed record SandblasterOptions
{
    /// <summary>Names the tables: NAME (the parameters), NAME.init, NAME.lbfgs.* (the solver's vectors).</summary>
    public string Name { get; init; } = "model";

    /// <summary>L-BFGS memory: the last m steps and gradient changes, each a parameter-sized table on the servers.</summary>
    public int History { get; init; } = 10;

    /// <summary>
    /// Examples in each half of an iteration's batch. Iteration k's batch is half k (seen at the last iteration too:
    /// the overlap that measures the change of gradient) and the fresh half k + 1, so each iteration costs one half
    /// more than a plain minibatch step (multi-batch L-BFGS, Berahas, Nocedal and Takáč 2016).
    /// </summary>
    public int HalfBatch { get; init; } = 2000;

    /// <summary>Examples per work unit: a worker claims one unit at a time, so faster workers do more.</summary>
    public int UnitExamples { get; init; } = 500;

    /// <summary>L2 regularisation, applied with the vector operations on the servers.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Stop after this many example gradients (passes x examples).</summary>
    public long ExampleBudget { get; init; }

    /// <summary>A unit claimed for longer than this many times the last round's mean unit time also goes to an idle worker (a backup task).</summary>
    public double BackupFactor { get; init; } = 3;

    /// <summary>Orders the examples (each pass is a fresh permutation).</summary>
    public int Seed { get; init; } = 1;

    public void Validate()
    {
        if (History < 1 || HalfBatch < 1 || UnitExamples < 1 || UnitExamples > HalfBatch || ExampleBudget < 1 || WeightDecay < 0 || BackupFactor <= 1)
        {
            throw new ArgumentException($"L-BFGS needs a history >= 1, 1 <= unit examples ({UnitExamples}) <= half batch ({HalfBatch}), a budget >= 1, weight decay >= 0 and a backup factor > 1");
        }
    }
}

/// <summary>Where the solver stands after an iteration (rank 0).</summary>
/// <param name="Iteration">Steps taken.</param>
/// <param name="Examples">Example gradients computed, rounds whose step was halved included.</param>
/// <param name="Loss">The mean training loss over the last round's batch.</param>
/// <param name="Backups">Units given to a second worker because the first was slow.</param>
/// <param name="Redone">Rounds run again because a worker died with finished units.</param>
/// <param name="StepsHalved">Rounds after which the step was halved (the overlap's loss rose by half).</param>
/// <param name="Compute">Time rank 0 spent computing units.</param>
/// <param name="Coordinate">Time rank 0 spent coordinating (waiting for units, vector operations).</param>
public readonly record struct SandblasterProgress(int Iteration, long Examples, double Loss, int Backups, int Redone, int StepsHalved, TimeSpan Compute, TimeSpan Coordinate);

/// <summary>
/// The app's part of a work unit: set the model's gradients to the mean over these examples (indices into the
/// training set) at its current parameters, and return the mean loss.
/// </summary>
public delegate double ExampleGradient(ReadOnlySpan<int> examples);

/// <summary>
/// DistBelief's Sandblaster L-BFGS. Rank 0 coordinates: every iteration it declares a round of small work units
/// (gradients over a few hundred examples) on the scheduler's work queue, which every worker, rank 0 included, claims
/// one at a time; a slow worker's unit goes to an idle one as a backup and the first result counts. Workers sum their
/// units' gradients and push them; the coordinator then runs the L-BFGS two-loop recursion and the step as vector
/// operations on the servers (<see cref="PsClient.RunVectorOpsAsync"/>), so no parameter-sized vector passes through it:
/// only dot products come back. A round whose units do not all arrive (a worker died) is run again.
/// </summary>
public sealed class SandblasterLbfgs
{
    private const int StatsWidth = 8; // overlap loss sum, fresh loss sum, overlap examples, fresh examples, units
    private const int ControlWidth = 4; // state (1 go, 2 stop), iteration

    private readonly PsClient _client;
    private readonly ITrainableModel _model;
    private readonly DistributedModel _bound;
    private readonly SandblasterOptions _options;
    private readonly int _exampleCount;
    private readonly ExampleGradient _gradient;
    private readonly int _unitsPerHalf;
    private readonly int _maxAttempts;
    private PsTable _go = null!, _gn = null!, _gp = null!, _g = null!, _d = null!, _stats = null!, _control = null!;
    private LbfgsMemory _memory = null!;
    private PsTable? _pendingY;
    private readonly int[] _permutation;
    private int _permutationEpoch = -1;

    private SandblasterLbfgs(PsClient client, ITrainableModel model, DistributedModel bound, int exampleCount, ExampleGradient gradient, SandblasterOptions options)
    {
        _client = client;
        _model = model;
        _bound = bound;
        _options = options;
        _exampleCount = exampleCount;
        _gradient = gradient;
        _unitsPerHalf = (options.HalfBatch + options.UnitExamples - 1) / options.UnitExamples;
        _maxAttempts = (int)(options.ExampleBudget / options.HalfBatch) + 64; // iterations, plus rounds run again
        _permutation = new int[exampleCount];
    }

    /// <summary>The model bound to the servers (rank 0 reads the trained parameters through it).</summary>
    public DistributedModel Model => _bound;

    /// <summary>
    /// Binds the model (its tables join the solver's placement group) and declares the solver's tables; every worker
    /// calls it with the same options and the same number of training examples.
    /// </summary>
    public static async Task<SandblasterLbfgs> BindAsync(PsClient client, ITrainableModel model, int exampleCount, ExampleGradient gradient, SandblasterOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(gradient);
        options.Validate();
        if (exampleCount < options.HalfBatch)
        {
            throw new ArgumentException($"L-BFGS halves of {options.HalfBatch} examples need at least that many training examples, got {exampleCount}");
        }
        string group = options.Name + ".lbfgs";
        var bound = await DistributedModel.BindAsync(client, model, new DistributedModelOptions
        {
            Name = options.Name,
            Mode = TrainingMode.Downpour,
            Update = "sum", // the solver moves the parameters with vector operations; no worker pushes to them
            PlacementGroup = group,
        }, cancellationToken).ConfigureAwait(false);
        var solver = new SandblasterLbfgs(client, model, bound, exampleCount, gradient, options);
        await solver.DeclareTablesAsync(group, cancellationToken).ConfigureAwait(false);
        return solver;
    }

    private async Task DeclareTablesAsync(string group, CancellationToken cancellationToken)
    {
        var layout = _bound.Layout;
        var like = new TableSpec($"{_options.Name}.lbfgs", layout.RowWidth)
        {
            DenseSize = (ulong)layout.Rows,
            BlockKeys = DistributedModel.BlockKeys(layout),
            PlacementGroup = group,
        };
        Task<PsTable> Vector(string name) => _client.DeclareTableAsync(like.WithName($"{_options.Name}.lbfgs.{name}"), cancellationToken);
        _go = await Vector("grad-overlap").ConfigureAwait(false);
        _gn = await Vector("grad-fresh").ConfigureAwait(false);
        _gp = await Vector("grad-previous").ConfigureAwait(false);
        _g = await Vector("grad").ConfigureAwait(false);
        _d = await Vector("direction").ConfigureAwait(false);
        _memory = await LbfgsMemory.DeclareAsync(_client, $"{_options.Name}.lbfgs", like, _options.History, cancellationToken).ConfigureAwait(false);
        _stats = await _client.DeclareTableAsync(new TableSpec($"{_options.Name}.lbfgs.stats", StatsWidth) { DenseSize = (ulong)_maxAttempts, BlockKeys = 64 }, cancellationToken).ConfigureAwait(false);
        _control = await _client.DeclareTableAsync(new TableSpec($"{_options.Name}.lbfgs.control", ControlWidth) { DenseSize = (ulong)_maxAttempts, BlockKeys = 64 }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Trains until the example budget is spent. Every worker calls it; rank 0 also coordinates and calls
    /// <paramref name="afterIteration"/> after each iteration with the model set to the new parameters.
    /// </summary>
    /// <remarks>
    /// No barrier: a round ends when the stats row counts all its units, each pushed by the worker whose completion
    /// came first, after its gradient landed. A straggler's unit is backed up by an idle worker and the round ends
    /// without it; the straggler's late completion is refused (its round is over) and it pushes nothing.
    /// </remarks>
    public async Task RunAsync(Func<SandblasterProgress, CancellationToken, Task>? afterIteration = null, CancellationToken cancellationToken = default)
    {
        bool coordinator = _client.Rank == 0;
        int units = 2 * _unitsPerHalf;
        var state = new CoordinatorState { Workers = _client.Diagnostics.LiveWorkers };
        if (coordinator)
        {
            await _client.DeclareWorkRoundAsync(0, units, FirstBackupAfter, cancellationToken).ConfigureAwait(false);
            await PublishAsync(0, go: true, iteration: 0, cancellationToken).ConfigureAwait(false);
        }
        var gradient = new float[_bound.Layout.Length];
        int attempt = 0;
        int iteration = await WaitForRoundAsync(attempt, cancellationToken).ConfigureAwait(false);
        while (iteration >= 0)
        {
            await _bound.FetchAsync(cancellationToken).ConfigureAwait(false);
            long computing = 0; // ticks in units, claims and pushes left out: the base of the backup delay
            int done = 0;
            while (await _client.ClaimWorkAsync(cancellationToken).ConfigureAwait(false) is int unit)
            {
                int round = _client.Diagnostics.WorkCounts.Round;
                if (round != attempt)
                {
                    // The coordinator moved on while this worker was away (a straggler): catch up to the unit's round.
                    attempt = round;
                    iteration = await WaitForRoundAsync(attempt, cancellationToken).ConfigureAwait(false);
                    await _bound.FetchAsync(cancellationToken).ConfigureAwait(false);
                }
                bool fresh = unit >= _unitsPerHalf;
                var examples = UnitExamples(fresh ? iteration + 1 : iteration, unit % _unitsPerHalf);
                long unitStart = Stopwatch.GetTimestamp();
                double loss = _gradient(examples);
                _bound.Layout.Gather(gradient, gradients: true);
                computing += Stopwatch.GetTimestamp() - unitStart;
                if (!await _client.CompleteWorkAsync(unit, cancellationToken).ConfigureAwait(false))
                {
                    continue; // a backup finished it first, or its round is over
                }
                TensorPrimitives.Multiply(gradient, examples.Length, gradient);
                await _client.WaitAsync((fresh ? _gn : _go).PushRange(0, gradient), cancellationToken).ConfigureAwait(false);
                // Counted once the gradient is in: the coordinator reads the sums only when every unit is counted.
                float[] row = fresh ? [0, (float)(loss * examples.Length), 0, examples.Length, 1, 0, 0, 0] : [(float)(loss * examples.Length), 0, examples.Length, 0, 1, 0, 0, 0];
                await _client.WaitAsync(_stats.PushRange((ulong)attempt, row), cancellationToken).ConfigureAwait(false);
                done++;
            }
            if (done > 0)
            {
                state.Compute += Stopwatch.GetElapsedTime(0, computing);
                state.UnitSeconds = Stopwatch.GetElapsedTime(0, computing).TotalSeconds / done;
            }
            if (coordinator)
            {
                long coordinateStart = Stopwatch.GetTimestamp();
                var progress = await CoordinateAsync(attempt, iteration, units, state, cancellationToken).ConfigureAwait(false);
                state.Coordinate += Stopwatch.GetElapsedTime(coordinateStart);
                if (progress is { } p && afterIteration is not null)
                {
                    await _bound.FetchAsync(cancellationToken).ConfigureAwait(false);
                    await afterIteration(p with { Compute = state.Compute, Coordinate = state.Coordinate }, cancellationToken).ConfigureAwait(false);
                }
            }
            attempt++;
            iteration = await WaitForRoundAsync(attempt, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until the coordinator has published round <paramref name="attempt"/>; its iteration, or -1 when training is over.</summary>
    private async Task<int> WaitForRoundAsync(int attempt, CancellationToken cancellationToken)
    {
        var control = new float[ControlWidth];
        var deadline = Stopwatch.GetTimestamp() + (long)(RoundTimeout.TotalSeconds * Stopwatch.Frequency);
        for (int delay = 1; ; delay = Math.Min(delay * 2, 20))
        {
            await _client.WaitAsync(_control.PullRange((ulong)attempt, control), cancellationToken).ConfigureAwait(false);
            if (control[0] != 0)
            {
                return control[0] == 1 ? (int)control[1] : -1;
            }
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new PsException(PsErrorCode.Timeout, $"L-BFGS: the coordinator (rank 0) did not publish round {attempt} within {RoundTimeout.TotalSeconds:0} s; is it alive?");
            }
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        }
    }

    private static readonly TimeSpan DeadWorkerGrace = TimeSpan.FromSeconds(2);

    /// <summary>The backup delay of the first round, before any unit has been timed.</summary>
    private static readonly TimeSpan FirstBackupAfter = TimeSpan.FromSeconds(1);

    /// <summary>How long a worker waits for the coordinator's next round, and the coordinator for a round's units.</summary>
    private static readonly TimeSpan RoundTimeout = TimeSpan.FromMinutes(5);

    /// <summary>Waits until every unit of the round is counted; false when a worker died and some never will be.</summary>
    private async Task<bool> WaitForUnitsAsync(int attempt, int units, int workersAtStart, float[] stats, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(RoundTimeout.TotalSeconds * Stopwatch.Frequency);
        for (int delay = 1; ; delay = Math.Min(delay * 2, 20))
        {
            await _client.WaitAsync(_stats.PullRange((ulong)attempt, stats), ct).ConfigureAwait(false);
            if (stats[4] >= units)
            {
                return true;
            }
            // The queue is done (this worker's last claim said so) but units are missing: a worker that completed them
            // died before its push, or is still pushing. Once the view declares a worker dead, its calls are refused.
            if (_client.Diagnostics.LiveWorkers < workersAtStart)
            {
                // A live worker may still be between its gradient and its count: give the pushes a moment to land
                // (a push that landed after the sums were cleared for the rerun would count twice).
                await Task.Delay(DeadWorkerGrace, ct).ConfigureAwait(false);
                await _client.WaitAsync(_stats.PullRange((ulong)attempt, stats), ct).ConfigureAwait(false);
                return stats[4] >= units;
            }
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new PsException(PsErrorCode.Timeout, $"L-BFGS: round {attempt} has {stats[4]} of {units} units counted after {RoundTimeout.TotalSeconds:0} s");
            }
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    private sealed class CoordinatorState
    {
        public int Workers; // live workers when the round started
        public int Backups;
        public long Examples;
        public int Backtracks;
        public int Redone;
        public int StepsHalved;
        public double PreviousFreshLoss = double.NaN;
        public double UnitSeconds = 0.05;
        public TimeSpan Compute;
        public TimeSpan Coordinate;
    }

    /// <summary>After attempt <paramref name="attempt"/> (of iteration <paramref name="iteration"/>): the solver's step, the next round, and what to report (null: the round runs again).</summary>
    private async Task<SandblasterProgress?> CoordinateAsync(int attempt, int iteration, int units, CoordinatorState state, CancellationToken ct)
    {
        var stats = new float[StatsWidth];
        bool complete = await WaitForUnitsAsync(attempt, units, state.Workers, stats, ct).ConfigureAwait(false);
        state.Workers = _client.Diagnostics.LiveWorkers;
        state.Backups += _client.Diagnostics.WorkCounts.Backups;
        double overlapCount = stats[2], freshCount = stats[3];
        SandblasterProgress? report = null;
        if (!complete)
        {
            // A worker died holding units it had finished: their gradients died with it. Run the round again.
            state.Redone++;
            await RunAsync(ct, VectorOp.Scale(_go, 0), VectorOp.Scale(_gn, 0)).ConfigureAwait(false);
        }
        else
        {
            state.Examples += (long)(overlapCount + freshCount);
            double overlapLoss = stats[0] / overlapCount, freshLoss = stats[1] / freshCount;
            if (iteration > 0 && overlapLoss > 1.5 * state.PreviousFreshLoss && state.Backtracks < 4)
            {
                // The step made the overlap's loss much worse: take half of it back and measure again.
                state.Backtracks++;
                state.StepsHalved++;
                await RunAsync(ct, VectorOp.Axpy(_bound.Table, -0.5, _memory.ReservedStep), VectorOp.Scale(_memory.ReservedStep, 0.5),
                    VectorOp.Scale(_go, 0), VectorOp.Scale(_gn, 0)).ConfigureAwait(false);
            }
            else
            {
                state.Backtracks = 0;
                await StepAsync(iteration, overlapCount, freshCount, ct).ConfigureAwait(false);
                state.PreviousFreshLoss = freshLoss;
                iteration++;
                report = new SandblasterProgress(iteration, state.Examples, (overlapLoss + freshLoss) / 2, state.Backups, state.Redone, state.StepsHalved, default, default);
            }
        }
        bool stop = state.Examples >= _options.ExampleBudget || attempt + 1 >= _maxAttempts;
        // Declared before it is published, so that no worker claims before the scheduler has the round; one that
        // claims a unit of it before the publication waits for it (WaitForRoundAsync).
        if (!stop)
        {
            var backupAfter = TimeSpan.FromSeconds(Math.Max(0.05, _options.BackupFactor * state.UnitSeconds));
            await _client.DeclareWorkRoundAsync(attempt + 1, units, backupAfter, ct).ConfigureAwait(false);
        }
        await PublishAsync(attempt + 1, !stop, iteration, ct).ConfigureAwait(false);
        return report;
    }

    /// <summary>One L-BFGS step from the gradient sums the round left in the overlap and fresh tables.</summary>
    private async Task StepAsync(int iteration, double overlapCount, double freshCount, CancellationToken ct)
    {
        double wd = _options.WeightDecay;
        var x = _bound.Table;
        var init = _bound.InitTable!;
        if (iteration > 0)
        {
            // y = change of the overlap's gradient across the last step (plus the regulariser's), s = that step.
            var (sNew, yNew) = (_memory.ReservedStep, _pendingY!);
            await RunAsync(ct, VectorOp.Axpby(yNew, 0, _go, 1 / overlapCount), VectorOp.Axpy(yNew, -1 / overlapCount, _gp),
                VectorOp.Axpy(yNew, wd, sNew)).ConfigureAwait(false);
            await _memory.CommitAsync(ct).ConfigureAwait(false);
        }
        // g = mean gradient over both halves + wd * (init + offset); the fresh half's sum becomes the next overlap's reference.
        double scale = 1 / (overlapCount + freshCount);
        var first = await RunAsync(ct, VectorOp.Axpby(_g, 0, _go, scale), VectorOp.Axpy(_g, scale, _gn), VectorOp.Axpy(_g, wd, init), VectorOp.Axpy(_g, wd, x),
            VectorOp.Copy(_gp, _gn), VectorOp.Scale(_go, 0), VectorOp.Scale(_gn, 0), VectorOp.Copy(_d, _g), VectorOp.Dot(_g, _g)).ConfigureAwait(false);
        double gg = first[0];
        await _memory.ApplyInverseHessianAsync(_d, ct).ConfigureAwait(false);
        double gd = (await RunAsync(ct, VectorOp.Dot(_g, _d)).ConfigureAwait(false))[0];
        if (_memory.Count == 0 || gd <= 0)
        {
            // No curvature yet, or not a descent direction: a gradient step no longer than 1, and a fresh memory.
            _memory.Clear();
            await RunAsync(ct, VectorOp.Axpby(_d, 0, _g, Math.Min(1, 1 / Math.Sqrt(gg)))).ConfigureAwait(false);
        }
        // The step: x -= d; the new pair's s = -d (its y comes with the next round's gradients).
        var (s, y) = _memory.Reserve();
        _pendingY = y;
        await RunAsync(ct, VectorOp.Axpy(x, -1, _d), VectorOp.Axpby(s, 0, _d, -1)).ConfigureAwait(false);
    }

    private Task<double[]> RunAsync(CancellationToken ct, params VectorOp[] ops) => _client.RunVectorOpsAsync(ops, ct);

    private async Task PublishAsync(int attempt, bool go, int iteration, CancellationToken ct) =>
        await _client.WaitAsync(_control.PushRange((ulong)attempt, [go ? 1 : 2, iteration, 0, 0]), ct).ConfigureAwait(false);

    /// <summary>The examples of one unit: half <paramref name="half"/> of the endless stream of permuted passes, piece <paramref name="piece"/>.</summary>
    private int[] UnitExamples(int half, int piece)
    {
        long first = ((long)half * _options.HalfBatch) + ((long)piece * _options.UnitExamples);
        long end = Math.Min(first + _options.UnitExamples, (long)(half + 1) * _options.HalfBatch);
        var examples = new int[end - first];
        for (long p = first; p < end; p++)
        {
            int epoch = (int)(p / _exampleCount);
            if (epoch != _permutationEpoch)
            {
                for (int i = 0; i < _permutation.Length; i++)
                {
                    _permutation[i] = i;
                }
                new Random(_options.Seed + epoch).Shuffle(_permutation);
                _permutationEpoch = epoch;
            }
            examples[p - first] = _permutation[p % _exampleCount];
        }
        return examples;
    }
}
