using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.LogReg;

/// <summary>`--solver owlqn`: rounds of <see cref="OwlqnSolver"/> until the objective stops falling.</summary>
public sealed partial class LogRegApp
{
    /// <summary>The most feature ids owlqn keeps dense vectors for: 2^25 x 26 vectors x 4 bytes = 3.5 GB over the servers.</summary>
    private const long MaxOwlqnFeatures = 1L << 25;

    /// <summary>Control keys per round: the summed loss, the nonzero weights, rank 0's decision, the iteration.</summary>
    private const int OwlqnRoundKeys = 4;

    private async Task<int> RunOwlqnAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var data = RowShard.From(LoadShard(context, cancellationToken)); // the columns are not kept: one copy in memory
        // The vectors are dense over feature ids: their size is the largest id of any shard, plus one.
        var size = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.features") { DenseSize = 1, ElementType = ElementType.Int64, Handler = "max" }, cancellationToken).ConfigureAwait(false);
        var largest = new long[] { data.Keys.Length == 0 ? 0 : (long)Math.Min(data.Keys.Max(), long.MaxValue - 1) + 1 };
        await client.WaitAsync(size.PushInt64([0], largest), cancellationToken).ConfigureAwait(false);
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        await client.WaitAsync(size.PullInt64([0], largest), cancellationToken).ConfigureAwait(false);
        long features = largest[0];
        if (features > MaxOwlqnFeatures)
        {
            throw new ArgumentException($"--solver owlqn keeps {OwlqnSolver.Vectors} dense vectors over feature ids on the servers, and the largest id here is {features - 1:N0} (at most {MaxOwlqnFeatures:N0}): hash the ids with --hash-bits 24 or fewer, or use --solver bpg, which keeps only the features that occur");
        }
        int maxRounds = (2 * options.MaxIterations) + 64;
        var control = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.rounds") { DenseSize = (ulong)(OwlqnRoundKeys * maxRounds), ElementType = ElementType.Int64 }, cancellationToken).ConfigureAwait(false);
        var solver = await OwlqnSolver.DeclareAsync(client, options.TablePrefix, (ulong)Math.Max(1, features), options.EffectiveL1, options.L2, cancellationToken).ConfigureAwait(false);
        var owned = await OwnedColumnsAsync(context, data.Keys, cancellationToken).ConfigureAwait(false);
        context.Log.LogInformation("logreg owlqn: {Features:N0} feature ids, history {History}, l1 {L1}, l2 {L2}, tol {Tol}", features, OwlqnSolver.History, options.EffectiveL1, options.L2, options.Tolerance);

        var weights = new float[data.Keys.Length];
        var gradient = new float[data.Keys.Length];
        var partials = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new double[data.Keys.Length]).ToArray();
        var sums = new long[2];
        var decision = new long[2];
        var last = new OwlqnSolver.Decision(false, false, double.NaN, double.NaN, double.NaN, false);
        int nonzero = 0;
        var started = Stopwatch.StartNew();
        var iterationWatch = Stopwatch.StartNew();
        for (int round = 0; round < maxRounds; round++)
        {
            await client.WaitAsync(solver.Trial.Pull(data.Keys, weights), cancellationToken).ConfigureAwait(false);
            var compute = Stopwatch.StartNew();
            double loss = OwlqnSolver.Evaluate(data, weights, gradient, partials);
            double computeSeconds = compute.Elapsed.TotalSeconds;
            int ownedNonzero = 0;
            for (int c = 0; c < weights.Length; c++)
            {
                ownedNonzero += owned[c] && weights[c] != 0 ? 1 : 0;
            }
            ulong key = (ulong)(OwlqnRoundKeys * round);
            await client.WaitAsync(solver.TrialGradient.Push(data.Keys, gradient), cancellationToken).ConfigureAwait(false);
            await client.WaitAsync(control.PushInt64([key, key + 1], [ToFixedPoint(loss), ownedNonzero]), cancellationToken).ConfigureAwait(false);
            client.Diagnostics.ReportStep(data.Rows, loss / Math.Max(1, data.Rows));
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            if (context.Rank == 0)
            {
                await client.WaitAsync(control.PullInt64([key, key + 1], sums), cancellationToken).ConfigureAwait(false);
                var next = await solver.AfterRoundAsync(sums[0] / LossScale, options.Tolerance, options.MaxIterations, cancellationToken).ConfigureAwait(false);
                bool stop = next.Stop || round + 1 == maxRounds;
                if (next.Accepted)
                {
                    last = next;
                    nonzero = (int)sums[1];
                    ReportIteration(context, "owlqn", solver.Iteration, new IterationStats(next.Objective, next.KktViolation, nonzero), next.Decrease, 0, iterationWatch.Elapsed.TotalSeconds, computeSeconds);
                    iterationWatch.Restart();
                }
                else if (next.Stop)
                {
                    context.Log.LogInformation("logreg owlqn: the line search found no lower objective in {Halvings} halvings after iteration {Iteration}: converged to float precision", solver.Halvings, solver.Iteration);
                    last = last with { Converged = true };
                }
                await client.WaitAsync(control.PushInt64([key + 2, key + 3], [stop ? 1 : 0, solver.Iteration]), cancellationToken).ConfigureAwait(false);
            }
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            await client.WaitAsync(control.PullInt64([key + 2, key + 3], decision), cancellationToken).ConfigureAwait(false);
            if (decision[0] != 0)
            {
                break;
            }
            context.Progress.Report(new JobProgress($"iteration {decision[1]}/{options.MaxIterations}", (double)decision[1] / options.MaxIterations));
        }
        var result = new BatchResult("owlqn", last.Objective, solver.Iteration, last.Converged, started.Elapsed.TotalSeconds, nonzero);
        return await FinishBatchAsync(context, new DenseWeights(solver.Weights, (ulong)features), async ct =>
        {
            var (keys, values) = await solver.Weights.ReadAllAsync(ct).ConfigureAwait(false);
            var kept = Enumerable.Range(0, keys.Length).Where(i => values[i] != 0).ToArray();
            return (kept.Select(i => keys[i]).ToArray(), kept.Select(i => values[i]).ToArray());
        }, result, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>The weights of a dense table over feature ids, read as a store for evaluation: ids past its end weigh 0.</summary>
internal sealed class DenseWeights(PsTable table, ulong size) : IWeightStore
{
    public long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination)
    {
        // Keys come sorted: those past the table's end are a tail, never trained (no shard had them).
        int inRange = keys.Length;
        while (inRange > 0 && keys[inRange - 1] >= size)
        {
            inRange--;
        }
        destination.Span[inRange..keys.Length].Clear();
        return table.Pull(keys[..inRange], destination[..inRange]);
    }

    public void Wait(long ticket) => table.Wait(ticket);

    public long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> gradient) => throw new NotSupportedException("the owlqn weights are only read here");

    public void WaitAll()
    {
    }
}
