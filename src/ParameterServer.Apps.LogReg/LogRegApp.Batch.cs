using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.LogReg;

/// <summary>`--solver bpg`: iterations of <see cref="BlockProximalSolver"/> until the objective stops falling.</summary>
public sealed partial class LogRegApp
{
    /// <summary>Fixed point of the objective's parts the workers add on the servers: 2^-24 resolution.</summary>
    private const double LossScale = 1 << 24;

    /// <summary>Control keys per iteration: the objective, the nonzero weights, rank 0's decision, its step, the line's objectives.</summary>
    private static readonly int ControlKeys = 4 + BlockProximalSolver.StepLengths.Length;

    /// <summary>What rank 0 tells the workers after an iteration.</summary>
    private enum Next : long
    {
        Continue = 0,
        Stop = 1,
        VerifyUnfiltered = 2, // converged with the KKT filter on: one more iteration without it decides
    }

    private Task<int> RunBatchAsync(WorkerContext context, CancellationToken cancellationToken) =>
        options.Solver == "owlqn" ? RunOwlqnAsync(context, cancellationToken) : RunBlockProximalAsync(context, cancellationToken);

    /// <summary>This worker's shard of the training rows, by column, logged with how long it took to load.</summary>
    private ShardMatrix LoadShard(WorkerContext context, CancellationToken cancellationToken)
    {
        var load = Stopwatch.StartNew();
        using var reader = new LibSvmReader(options.Data, context.Rank, context.WorkerCount, ReaderOptions);
        var data = ShardMatrix.Load(reader, cancellationToken);
        if (reader.BadLines > 0)
        {
            context.Log.LogWarning("Skipped {Bad} malformed lines in rank {Rank}'s shard of {Data}", reader.BadLines, context.Rank, options.Data);
        }
        context.Log.LogInformation("logreg {Solver} rank {Rank}/{Workers}: {Rows:N0} rows, {Features:N0} features, {Nonzeros:N0} nonzeros of {Data} loaded in {Seconds:0.00} s",
            options.Solver, context.Rank, context.WorkerCount, data.Rows, data.Keys.Length, data.Nonzeros, options.Data, load.Elapsed.TotalSeconds);
        return data;
    }

    private LibSvmOptions ReaderOptions => new() { HashBits = options.HashBits, SkipBadLines = options.SkipBadLines };

    /// <summary>
    /// Which of this worker's columns it owns: those no lower rank holds. Each key's regulariser is counted by its
    /// owner, so the workers add up the objective among themselves and nobody reads the whole model per iteration.
    /// </summary>
    private async Task<bool[]> OwnedColumnsAsync(WorkerContext context, ulong[] keys, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var holders = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.holders") { ElementType = ElementType.Int32, Handler = "max" }, cancellationToken).ConfigureAwait(false);
        var rankMarks = new int[keys.Length];
        Array.Fill(rankMarks, context.WorkerCount - context.Rank);
        await client.WaitAsync(holders.PushInt32(keys, rankMarks), cancellationToken).ConfigureAwait(false);
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        await client.WaitAsync(holders.PullInt32(keys, rankMarks), cancellationToken).ConfigureAwait(false);
        return rankMarks.Select(mark => mark == context.WorkerCount - context.Rank).ToArray();
    }

    private async Task<int> RunBlockProximalAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var weightsTable = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.weights", 2) { Handler = options.HandlerSpec, Mode = UpdateMode.Sync, KeyCaching = options.KeyCaching, Compression = options.Compression }, cancellationToken).ConfigureAwait(false);
        var control = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.objective") { DenseSize = (ulong)(ControlKeys * (options.MaxIterations + 1)), ElementType = ElementType.Int64 }, cancellationToken).ConfigureAwait(false);
        var largest = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.kkt") { DenseSize = (ulong)(options.MaxIterations + 1), ElementType = ElementType.Int64, Handler = "max" }, cancellationToken).ConfigureAwait(false);
        var data = LoadShard(context, cancellationToken);
        int blocks = options.Blocks;
        if (blocks == 0)
        {
            // Auto: about two blocks per feature of a mean row, so a row has rarely more than one feature in a block
            // (its curvature bound stays tight); the same on every worker, from the sums over all shards.
            var shape = new long[2];
            await client.WaitAsync(control.PushInt64([0, 1], [data.Nonzeros, data.Rows]), cancellationToken).ConfigureAwait(false);
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            await client.WaitAsync(control.PullInt64([0, 1], shape), cancellationToken).ConfigureAwait(false);
            blocks = LogRegOptions.AutoBlocks(shape[0], shape[1]);
        }
        int delay = Math.Min(options.Delay, blocks - 1);
        weightsTable.Consistency = Consistency.BoundedDelay(delay);
        context.Log.LogInformation("logreg bpg: {Blocks} blocks, delay {Delay}, l1 {L1}, l2 {L2}, tol {Tol}", blocks, delay, options.EffectiveL1, options.L2, options.Tolerance);

        var solver = new BlockProximalSolver(data, weightsTable, blocks, delay, options.EffectiveL1);
        var owned = await OwnedColumnsAsync(context, data.Keys, cancellationToken).ConfigureAwait(false);
        bool filter = options.EffectiveL1 > 0;
        bool verifying = false;
        double previous = double.NaN;
        var stats = new IterationStats(double.NaN, 0, 0);
        int iteration = 0;
        bool converged = false;
        var started = Stopwatch.StartNew();
        var answer = new long[1];
        var sums = new long[2];
        // With L2 alone, each iteration ends with the best of a few longer steps along its whole move (measured
        // exactly, so the objective still never rises); with L1 a longer step would undo the zeros it set.
        bool searchLine = options.EffectiveL1 == 0;
        var lineObjectives = new double[BlockProximalSolver.StepLengths.Length];
        var lineFixed = new long[lineObjectives.Length];
        static ulong[] lineKeys(ulong first) => Enumerable.Range(4, BlockProximalSolver.StepLengths.Length).Select(i => first + (ulong)i).ToArray();
        while (iteration < options.MaxIterations)
        {
            iteration++;
            bool unfiltered = BlockProximalSolver.Unfiltered(iteration, filter, verifying);
            var watch = Stopwatch.StartNew();
            solver.MarkStart();
            solver.Iterate(filtered: !unfiltered, cancellationToken);
            double computeSeconds = watch.Elapsed.TotalSeconds;
            ulong key = (ulong)(ControlKeys * iteration);
            double localLoss = solver.Loss();
            var part = solver.Regulariser(owned, options.EffectiveL1, options.L2);
            await client.WaitAsync(control.PushInt64([key, key + 1], [ToFixedPoint(localLoss + part.Penalty), part.Nonzero]), cancellationToken).ConfigureAwait(false);
            if (searchLine)
            {
                solver.LineObjectives(owned, options.EffectiveL1, options.L2, lineObjectives);
                for (int a = 0; a < lineObjectives.Length; a++)
                {
                    lineFixed[a] = ToFixedPoint(lineObjectives[a]);
                }
                await client.WaitAsync(control.PushInt64(lineKeys(key), lineFixed), cancellationToken).ConfigureAwait(false);
            }
            await client.WaitAsync(largest.PushInt64([(ulong)iteration], [ToFixedPoint(part.KktViolation)]), cancellationToken).ConfigureAwait(false);
            client.Diagnostics.ReportStep(data.Rows, localLoss / Math.Max(1, data.Rows));
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            if (context.Rank == 0)
            {
                await client.WaitAsync(control.PullInt64([key, key + 1], sums), cancellationToken).ConfigureAwait(false);
                await client.WaitAsync(largest.PullInt64([(ulong)iteration], answer), cancellationToken).ConfigureAwait(false);
                stats = new IterationStats(sums[0] / LossScale, answer[0] / LossScale, (int)sums[1]);
                long step = 0;
                if (searchLine)
                {
                    await client.WaitAsync(control.PullInt64(lineKeys(key), lineFixed), cancellationToken).ConfigureAwait(false);
                    int best = Array.IndexOf(lineFixed, lineFixed.Min());
                    if (lineFixed[best] < sums[0])
                    {
                        step = best + 1;
                        stats = stats with { Objective = lineFixed[best] / LossScale };
                    }
                }
                await client.WaitAsync(control.PushInt64([key + 3], [step]), cancellationToken).ConfigureAwait(false);
                double decrease = (previous - stats.Objective) / Math.Abs(stats.Objective);
                var next = Next.Continue;
                if (decrease >= 0 && decrease < options.Tolerance)
                {
                    next = unfiltered ? Next.Stop : Next.VerifyUnfiltered;
                }
                previous = stats.Objective;
                ReportIteration(context, "bpg", iteration, stats, decrease, unfiltered ? 0 : solver.Skipped, watch.Elapsed.TotalSeconds, computeSeconds);
                await client.WaitAsync(control.PushInt64([key + 2], [(long)next]), cancellationToken).ConfigureAwait(false);
            }
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            await client.WaitAsync(control.PullInt64([key + 2, key + 3], sums), cancellationToken).ConfigureAwait(false);
            var decision = (Next)sums[0];
            if (sums[1] > 0)
            {
                solver.Extrapolate(BlockProximalSolver.StepLengths[sums[1] - 1], owned);
            }
            if (decision == Next.Stop)
            {
                converged = true;
                break;
            }
            verifying = decision == Next.VerifyUnfiltered;
            context.Progress.Report(new JobProgress($"iteration {iteration}/{options.MaxIterations}", (double)iteration / options.MaxIterations));
        }
        var result = new BatchResult("bpg", stats.Objective, iteration, converged, started.Elapsed.TotalSeconds, stats.Nonzero);
        return await FinishBatchAsync(context, new ProximalWeights(weightsTable), async ct =>
        {
            var (keys, rows) = await weightsTable.ReadAllAsync(ct).ConfigureAwait(false);
            var weights = new float[keys.Length];
            for (int i = 0; i < keys.Length; i++)
            {
                weights[i] = rows[2 * i];
            }
            return (keys, weights);
        }, result, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How a batch solver ended (rank 0's view).</summary>
    private readonly record struct BatchResult(string Solver, double Objective, int Iterations, bool Converged, double Seconds, int Nonzero);

    /// <summary>After a batch solver: the test metrics over every worker's share of --test, the model file, the final line.</summary>
    private async Task<int> FinishBatchAsync(WorkerContext context, IWeightStore weights, Func<CancellationToken, Task<(ulong[] Keys, float[] Weights)>> readModel, BatchResult result, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var metricsTable = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.metrics") { DenseSize = BinaryMetrics.VectorLength, BlockKeys = BinaryMetrics.VectorLength }, cancellationToken).ConfigureAwait(false);
        var metrics = new BinaryMetrics();
        if (options.Test is { } test)
        {
            using var testReader = new LibSvmReader(test, context.Rank, context.WorkerCount, ReaderOptions);
            new LogRegTrainer(weights, options.Batch, prefetch: false).Evaluate(testReader, metrics, cancellationToken);
        }
        var vector = new float[BinaryMetrics.VectorLength];
        metrics.WriteTo(vector);
        await client.WaitAsync(metricsTable.PushRange(0, vector), cancellationToken).ConfigureAwait(false);
        JobTraffic.Publish(client);
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        if (context.Rank == 0)
        {
            await client.WaitAsync(metricsTable.PullRange(0, vector), cancellationToken).ConfigureAwait(false);
            var job = BinaryMetrics.ReadFrom(vector);
            var (keys, model) = await readModel(cancellationToken).ConfigureAwait(false);
            if (options.ModelOut is { } path)
            {
                ModelFile.Write(path, options.HashBits, keys, model);
                context.Log.LogInformation("Wrote {Nonzero} nonzero weights to {Path}", result.Nonzero, path);
            }
            var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
            var final = new Dictionary<string, object?>
            {
                ["app"] = "logreg",
                ["solver"] = result.Solver,
                ["test_accuracy"] = Round(job.Accuracy),
                ["test_auc"] = Round(job.Auc),
                ["test_logloss"] = Round(job.LogLoss),
                ["objective"] = Math.Round(result.Objective, 6),
                ["iterations"] = result.Iterations,
                ["converged"] = result.Converged,
                ["seconds"] = Math.Round(result.Seconds, 3),
                ["nonzero_weights"] = result.Nonzero,
                ["workers"] = context.WorkerCount,
                ["servers"] = client.ServerCount,
            };
            JobTraffic.AddTo(final, workerTraffic, serverTraffic);
            if (options.ModelOut is not null)
            {
                final["model"] = options.ModelOut;
            }
            context.Output.WriteLine(context.Json
                ? JsonSerializer.Serialize(final)
                : string.Create(CultureInfo.InvariantCulture, $"done: test accuracy {Percent(final["test_accuracy"])}, AUC {Fixed(final["test_auc"])}, logloss {Fixed(final["test_logloss"])}, objective {result.Objective:0.####} after {result.Iterations} iterations ({result.Seconds:0.00} s), {result.Nonzero} nonzero weights{(options.ModelOut is null ? "" : $", model in {options.ModelOut}")}"));
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false); // keep the job up until rank 0 has read the model
        return 0;
    }

    /// <summary>
    /// An iteration's report (rank 0): objective = sum of log losses + l1 |w|_1 + l2/2 |w|^2 (liblinear's primal
    /// divided by its C: C = 1/l2 for -s 0, 1/l1 for -s 6), the largest KKT violation, the nonzero weights.
    /// </summary>
    private readonly record struct IterationStats(double Objective, double KktViolation, int Nonzero);

    /// <summary>Fixed point of the sums the workers add on the servers (int64: exact, in any order).</summary>
    private static long ToFixedPoint(double value) => (long)Math.Round(value * LossScale);

    private static void ReportIteration(WorkerContext context, string solver, int iteration, IterationStats stats, double decrease, long skipped, double seconds, double computeSeconds)
    {
        if (context.Json)
        {
            context.Output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["app"] = "logreg",
                ["solver"] = solver,
                ["iteration"] = iteration,
                ["objective"] = Math.Round(stats.Objective, 6),
                ["relative_decrease"] = double.IsFinite(decrease) ? decrease : null,
                ["kkt_violation"] = Math.Round(stats.KktViolation, 6),
                ["nonzero_weights"] = stats.Nonzero,
                ["skipped_by_kkt_filter"] = skipped,
                ["seconds"] = Math.Round(seconds, 4),
                ["compute_seconds"] = Math.Round(computeSeconds, 4),
            }));
        }
        else
        {
            string change = double.IsFinite(decrease) ? decrease.ToString("0.00e+0", CultureInfo.InvariantCulture) : "-";
            context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"iteration {iteration}  objective {stats.Objective:0.####}  relative decrease {change}  KKT violation {stats.KktViolation:0.####}  {stats.Nonzero} nonzero weights  {seconds:0.000} s"));
        }
        context.Output.Flush();
    }
}

/// <summary>The weights of a bpg table (rows [w, g]) read as a width-1 store, for evaluation.</summary>
internal sealed class ProximalWeights(PsTable table) : IWeightStore
{
    private float[] _rows = new float[512];
    private Memory<float> _destination;

    public long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination)
    {
        if (_rows.Length < 2 * keys.Length)
        {
            _rows = new float[4 * keys.Length];
        }
        _destination = destination[..keys.Length];
        return table.Pull(keys, _rows.AsMemory(0, 2 * keys.Length));
    }

    public void Wait(long ticket)
    {
        table.Wait(ticket);
        var destination = _destination.Span;
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = _rows[2 * i];
        }
    }

    public long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> gradient) => throw new NotSupportedException("the bpg weights are only read here");

    public void WaitAll()
    {
    }
}
