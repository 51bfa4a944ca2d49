using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Extensions;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.LogReg;

/// <summary>
/// Sparse logistic regression, the paper's flagship: each worker streams its shard of a LIBSVM file in
/// minibatches, pulls only the weights a batch touches, pushes the gradient; the servers run FTRL / AdaGrad /
/// SGD. After every epoch each worker evaluates its shard of the test file; the metrics of all workers meet
/// in a sum table and rank 0 prints them. Sequential consistency trains in sync (BSP) mode: deterministic.
/// </summary>
public sealed partial class LogRegApp(LogRegOptions options) : IPsApp
{
    /// <summary>Floats per epoch in the metrics table: test metrics, then train loss, rows, seconds, waits, bytes.</summary>
    private const int Extra = 8;
    private const int Stride = BinaryMetrics.VectorLength + Extra;

    public string Name => "logreg";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        if (client.Joined)
        {
            // Each worker reads its share of the data file by rank, fixed at the start: a newcomer would re-read rows.
            throw new ArgumentException("logreg splits the training data by rank when the job starts, so a worker cannot join a running logreg job; add servers with pserver server --join, or start the job with more --workers");
        }
        if (options.IsBatch)
        {
            return await RunBatchAsync(context, cancellationToken).ConfigureAwait(false);
        }
        bool sequential = options.Consistency.Tau == 0;
        var mode = sequential ? UpdateMode.Sync : UpdateMode.Async;
        var weightsTable = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.weights") { Handler = options.HandlerSpec, Mode = mode, KeyCaching = options.KeyCaching, Compression = options.Compression, PullFilter = options.PullFilter }, cancellationToken).ConfigureAwait(false);
        weightsTable.Consistency = options.Consistency;
        weightsTable.PushFilter = client.Extensions.CreatePushFilter(options.Filter, () => new KktFilter((float)options.EffectiveL1));
        var metricsTable = await client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.metrics") { DenseSize = (ulong)((options.EpochLimit + 1) * Stride), BlockKeys = Stride, Mode = UpdateMode.Sync }, cancellationToken).ConfigureAwait(false);
        // --epochs auto: a fixed part of the rows is held out, and training stops when its log loss stops improving.
        var readerOptions = new LibSvmOptions { HashBits = options.HashBits, SkipBadLines = options.SkipBadLines, HoldoutFraction = options.AutoEpochs ? options.ValidationFraction : 0 };
        var validationOptions = readerOptions with { ReadHeldOut = true };
        double bestValidation = double.PositiveInfinity;
        int epochsRun = 0;

        int rounds = 0;
        if (sequential)
        {
            rounds = await AgreeOnRoundsAsync(context, readerOptions, cancellationToken).ConfigureAwait(false);
        }
        var trainer = new LogRegTrainer(new ServerWeights(client, weightsTable), options.Batch, prefetch: !sequential, kkt: options.UsesKkt);
        context.Log.LogInformation("logreg rank {Rank}/{Workers}: {Data}, {Epochs} epochs, batch {Batch}, {Handler}, {Consistency} ({Mode})",
            context.Rank, context.WorkerCount, options.Data, options.AutoEpochs ? $"auto (at most {options.EpochLimit}, {options.ValidationFraction:P0} held out)" : options.Epochs, options.Batch, options.HandlerSpec, options.Consistency, mode.ToString().ToLowerInvariant());

        var summary = new Dictionary<string, object?>();
        double trainSecondsTotal = 0;
        long trainRowsTotal = 0;
        for (int epoch = 1; epoch <= options.EpochLimit; epoch++)
        {
            epochsRun = epoch;
            var waitBefore = client.WaitTime;
            var watch = Stopwatch.StartNew();
            EpochResult result;
            using (var reader = new LibSvmReader(options.Data, context.Rank, context.WorkerCount, readerOptions))
            {
                int e = epoch;
                Action<double>? progress = context.Rank == 0 ? f => context.Progress.Report(new JobProgress($"epoch {e}/{(options.AutoEpochs ? "auto" : options.Epochs)}", f)) : null;
                result = trainer.Train(reader, rounds, progress, cancellationToken);
                if (epoch == 1 && result.Rows == 0)
                {
                    context.Log.LogWarning("Worker rank {Rank} has no training rows: its shard of {Data} is empty (fewer lines than workers?)", context.Rank, options.Data);
                }
                if (reader.BadLines > 0 && epoch == 1)
                {
                    context.Log.LogWarning("Skipped {Bad} malformed lines in rank {Rank}'s shard of {Data}", reader.BadLines, context.Rank, options.Data);
                }
            }
            double trainSeconds = watch.Elapsed.TotalSeconds;
            double waitSeconds = (client.WaitTime - waitBefore).TotalSeconds;
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);

            var metrics = new BinaryMetrics();
            if (options.Test is { } test)
            {
                using var testReader = new LibSvmReader(test, context.Rank, context.WorkerCount, readerOptions);
                trainer.Evaluate(testReader, metrics, cancellationToken);
            }
            var vector = new float[Stride];
            metrics.WriteTo(vector);
            int x = BinaryMetrics.VectorLength;
            if (options.AutoEpochs)
            {
                var validation = new BinaryMetrics();
                using var validationReader = new LibSvmReader(options.Data, context.Rank, context.WorkerCount, validationOptions);
                trainer.Evaluate(validationReader, validation, cancellationToken);
                vector[x + 4] = (float)validation.LossSum;
                vector[x + 5] = (float)validation.Count;
            }
            vector[x] = (float)result.LossSum;
            vector[x + 1] = result.Rows;
            vector[x + 2] = (float)trainSeconds;
            vector[x + 3] = (float)waitSeconds;
            vector[x + 6] = 1; // workers reporting
            ulong first = (ulong)(epoch * Stride);
            await client.WaitAsync(metricsTable.PushRange(first, vector), cancellationToken).ConfigureAwait(false);
            JobTraffic.Publish(client);
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);

            bool stop = false;
            if (context.Rank == 0)
            {
                var all = new float[Stride];
                await client.WaitAsync(metricsTable.PullRange(first, all), cancellationToken).ConfigureAwait(false);
                var job = BinaryMetrics.ReadFrom(all);
                double rows = all[x + 1];
                double workers = Math.Max(1, all[x + 6]);
                double seconds = all[x + 2] / workers;
                trainRowsTotal += (long)rows;
                trainSecondsTotal += seconds;
                var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
                var line = new Dictionary<string, object?>
                {
                    ["app"] = "logreg",
                    ["epoch"] = epoch,
                    ["train_logloss"] = Round(all[x] / Math.Max(1, rows)),
                    ["test_logloss"] = Round(job.LogLoss),
                    ["test_accuracy"] = Round(job.Accuracy),
                    ["test_auc"] = Round(job.Auc),
                    ["examples_per_sec"] = Math.Round(rows / Math.Max(seconds, 1e-9)),
                    ["wait_fraction"] = Round(all[x + 3] / Math.Max(all[x + 2], 1e-9)),
                    ["seconds"] = Math.Round(seconds, 3),
                };
                if (options.AutoEpochs)
                {
                    double validationLoss = all[x + 4] / Math.Max(1, all[x + 5]);
                    line["validation_logloss"] = Round(validationLoss);
                    bool improved = validationLoss < bestValidation * (1 - 1e-4);
                    bestValidation = Math.Min(bestValidation, validationLoss);
                    stop = !improved;
                }
                JobTraffic.AddTo(line, workerTraffic, serverTraffic);
                summary = line;
                if (context.Json)
                {
                    context.Output.WriteLine(JsonSerializer.Serialize(line));
                }
                else
                {
                    string testPart = options.Test is null ? "" : string.Create(CultureInfo.InvariantCulture, $"  test logloss {job.LogLoss:0.0000}  accuracy {job.Accuracy * 100:0.00}%  AUC {job.Auc:0.0000}");
                    context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"epoch {epoch}/{(options.AutoEpochs ? "auto" : options.Epochs)}  train logloss {all[x] / Math.Max(1, rows):0.0000}{(options.AutoEpochs ? $"  validation logloss {line["validation_logloss"]:0.0000}" : "")}{testPart}  {rows / Math.Max(seconds, 1e-9):N0} examples/s  sent {Megabytes((long)line["bytes_sent"]!)}  received {Megabytes((long)line["bytes_received"]!)}"));
                }
                context.Output.Flush();
            }
            if (options.AutoEpochs)
            {
                // Everyone learns rank 0's decision (the held-out loss stopped improving): a sync round of the metrics
                // table, every worker pushing, only rank 0 a nonzero flag; its answer comes once all have pushed.
                ulong flagKey = first + (ulong)(x + 7);
                await client.WaitAsync(metricsTable.PushRange(flagKey, [stop ? 1f : 0f]), cancellationToken).ConfigureAwait(false);
                var flag = new float[1];
                await client.WaitAsync(metricsTable.PullRange(flagKey, flag), cancellationToken).ConfigureAwait(false);
                if (flag[0] > 0)
                {
                    break;
                }
            }
        }

        if (context.Rank == 0)
        {
            var (keys, values) = await weightsTable.ReadAllAsync(cancellationToken).ConfigureAwait(false);
            int nonzero = values.Count(v => v != 0);
            if (options.ModelOut is { } path)
            {
                ModelFile.Write(path, options.HashBits, keys, values);
                context.Log.LogInformation("Wrote {Nonzero} nonzero weights to {Path}", nonzero, path);
            }
            var final = new Dictionary<string, object?>
            {
                ["app"] = "logreg",
                ["test_accuracy"] = summary.GetValueOrDefault("test_accuracy"),
                ["test_auc"] = summary.GetValueOrDefault("test_auc"),
                ["test_logloss"] = summary.GetValueOrDefault("test_logloss"),
                ["examples_per_sec"] = Math.Round(trainRowsTotal / Math.Max(trainSecondsTotal, 1e-9)),
                ["nonzero_weights"] = nonzero,
                ["bytes_sent"] = summary.GetValueOrDefault("bytes_sent", 0L),
                ["bytes_received"] = summary.GetValueOrDefault("bytes_received", 0L),
                ["traffic"] = summary.GetValueOrDefault("traffic"),
                ["epochs"] = epochsRun,
                ["workers"] = context.WorkerCount,
                ["servers"] = client.ServerCount,
            };
            if (options.ModelOut is not null)
            {
                final["model"] = options.ModelOut;
            }
            context.Output.WriteLine(context.Json
                ? JsonSerializer.Serialize(final)
                : string.Create(CultureInfo.InvariantCulture, $"done: test accuracy {Percent(final["test_accuracy"])}, AUC {Fixed(final["test_auc"])}, logloss {Fixed(final["test_logloss"])}, {nonzero} nonzero weights, {final["examples_per_sec"]:N0} examples/s{(options.ModelOut is null ? "" : $", model in {options.ModelOut}")}"));
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false); // keep the job up until rank 0 has read the model
        return 0;
    }

    /// <summary>Sync rounds need the same number of pushes from every worker: everyone takes the largest shard's batch count.</summary>
    private async Task<int> AgreeOnRoundsAsync(WorkerContext context, LibSvmOptions readerOptions, CancellationToken cancellationToken)
    {
        long rows = LibSvmReader.CountRows(options.Data, context.Rank, context.WorkerCount, readerOptions);
        int batches = (int)((rows + options.Batch - 1) / options.Batch);
        var table = await context.Client.DeclareTableAsync(new TableSpec($"{options.TablePrefix}.rounds") { DenseSize = (ulong)context.WorkerCount, Mode = UpdateMode.Async }, cancellationToken).ConfigureAwait(false);
        await context.Client.WaitAsync(table.Push([(ulong)context.Rank], [batches]), cancellationToken).ConfigureAwait(false);
        await context.Client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        var all = new float[context.WorkerCount];
        await context.Client.WaitAsync(table.PullRange(0, all), cancellationToken).ConfigureAwait(false);
        return (int)all.Max();
    }

    /// <summary>Six decimals; null (JSON null) when undefined, e.g. test metrics without a test file.</summary>
    private static object? Round(double value) => double.IsFinite(value) ? Math.Round(value, 6) : null;

    private static string Percent(object? value) => value is double d ? string.Create(CultureInfo.InvariantCulture, $"{d * 100:0.00}%") : "n/a";

    private static string Fixed(object? value) => value is double d ? d.ToString("0.0000", CultureInfo.InvariantCulture) : "n/a";

    private static string Megabytes(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.0} MB");
}
