using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Hosting;
using ParameterServer.Nn;
using MnistFiles = ParameterServer.Nn.Data.Mnist;
using ParameterServer.Nn.Distributed;

namespace ParameterServer.Apps.Mnist;

/// <summary>
/// A neural network on MNIST with its parameters on the servers: each worker trains on every W-th image, fetching
/// and pushing through <see cref="DistributedModel"/> (Downpour SGD or synchronous). After every epoch the workers
/// evaluate their shares of the test set on the current parameters; the sums meet in a table and rank 0 reports.
/// </summary>
public sealed class MnistApp(MnistOptions options) : IPsApp
{
    // Per epoch: test loss sum, test correct, test count, train loss sum, train images, train seconds, fetch wait, push time, workers.
    private const int Stride = 9;

    public string Name => "mnist";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        if (client.Joined)
        {
            throw new ArgumentException("mnist splits the images by rank when the job starts, so a worker cannot join a running mnist job; start the job with more --workers");
        }
        var train = MnistFiles.LoadDirectory(options.Data, train: true);
        var test = MnistFiles.LoadDirectory(options.Data, train: false);
        if (options.Lbfgs)
        {
            return await RunLbfgsAsync(context, train, test, cancellationToken).ConfigureAwait(false);
        }
        var trainShard = new ImageShard(train, context.Rank, context.WorkerCount, options.TrainLimit, options.Seed);
        var testShard = new ImageShard(test, context.Rank, context.WorkerCount, options.TestLimit, options.Seed);
        var model = Models.Create(options.Model, MnistTraining.Input, MnistTraining.Classes, options.Batch);
        model.Initialize(options.Seed);
        var distributed = await DistributedModel.BindAsync(client, model, new DistributedModelOptions
        {
            Name = "mnist." + options.Model.Replace(':', '-').Replace(',', '-'),
            Mode = options.Mode,
            Update = options.HandlerSpec,
            FetchEvery = options.FetchEvery,
            PushEvery = options.PushEvery,
            Compression = options.Compression,
            Consistency = options.Consistency,
        }, cancellationToken).ConfigureAwait(false);
        var metricsTable = await client.DeclareTableAsync(new TableSpec("mnist.metrics") { DenseSize = (ulong)((options.Epochs + 1) * Stride), BlockKeys = Stride, Mode = UpdateMode.Sync }, cancellationToken).ConfigureAwait(false);

        // Every worker takes the same number of steps (sync rounds need it): the smallest shard's whole batches.
        int smallest = (Math.Min(options.TrainLimit > 0 ? options.TrainLimit : train.Count, train.Count)) / context.WorkerCount;
        int stepsPerEpoch = smallest / options.Batch;
        if (stepsPerEpoch == 0)
        {
            throw new ArgumentException($"each of the {context.WorkerCount} workers has {smallest} training images, fewer than one batch of {options.Batch}");
        }
        long totalSteps = (long)stepsPerEpoch * options.Epochs;
        context.Log.LogInformation("mnist rank {Rank}/{Workers}: {Model}, {Shard} training images, {Steps} steps of {Batch} per epoch, {Mode}, {Update}",
            context.Rank, context.WorkerCount, model, trainShard.Count, stepsPerEpoch, options.Batch, options.Mode, options.HandlerSpec);

        var x = new float[options.Batch * train.ImageSize];
        var y = new byte[options.Batch];
        float decay = (float)options.WeightDecay;
        var final = new Dictionary<string, object?>();
        double trainSecondsTotal = 0;
        long imagesTotal = 0;
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            trainShard.Shuffle();
            var fetchBefore = distributed.FetchWait;
            var pushBefore = distributed.PushTime;
            var watch = Stopwatch.StartNew();
            double lossSum = 0;
            for (int step = 0; step < stepsPerEpoch; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                trainShard.Fill(step, options.Batch, x, y);
                distributed.BeforeStep();
                double loss = model.ComputeGradients(x, y, options.Batch);
                lossSum += loss;
                MnistTraining.AddWeightDecay(model, decay);
                distributed.AfterStep(MnistTraining.Schedule(options.Schedule, distributed.Steps, totalSteps));
                client.Diagnostics.ReportStep(options.Batch, loss);
                if (context.Rank == 0 && step % 20 == 0)
                {
                    context.Progress.Report(new JobProgress($"epoch {epoch}/{options.Epochs}", (double)step / stepsPerEpoch));
                }
            }
            await distributed.FinishAsync(cancellationToken).ConfigureAwait(false);
            double trainSeconds = watch.Elapsed.TotalSeconds;
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            await distributed.FetchAsync(cancellationToken).ConfigureAwait(false); // every worker's pushes are in

            var (testLoss, correct, count) = MnistTraining.Evaluate(model, testShard);
            float[] vector = [(float)testLoss, correct, count, (float)lossSum, stepsPerEpoch * options.Batch, (float)trainSeconds,
                (float)(distributed.FetchWait - fetchBefore).TotalSeconds, (float)(distributed.PushTime - pushBefore).TotalSeconds, 1];
            ulong first = (ulong)(epoch * Stride);
            await client.WaitAsync(metricsTable.PushRange(first, vector), cancellationToken).ConfigureAwait(false);
            JobTraffic.Publish(client);
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            if (context.Rank != 0)
            {
                continue;
            }
            var all = new float[Stride];
            await client.WaitAsync(metricsTable.PullRange(first, all), cancellationToken).ConfigureAwait(false);
            double workers = Math.Max(1, all[8]);
            double seconds = all[5] / workers;
            imagesTotal += (long)all[4];
            trainSecondsTotal += seconds;
            var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
            var line = new Dictionary<string, object?>
            {
                ["app"] = "mnist",
                ["epoch"] = epoch,
                ["model"] = options.Model,
                ["train_loss"] = Math.Round(all[3] / Math.Max(1, all[4] / options.Batch), 6),
                ["test_loss"] = Math.Round(all[0] / Math.Max(1, all[2]), 6),
                ["test_accuracy"] = Math.Round(all[1] / Math.Max(1, all[2]), 6),
                ["images_per_sec"] = Math.Round(all[4] / Math.Max(seconds, 1e-9)),
                ["fetch_wait_fraction"] = Math.Round(all[6] / Math.Max(all[5], 1e-9), 4),
                ["push_fraction"] = Math.Round(all[7] / Math.Max(all[5], 1e-9), 4),
                ["seconds"] = Math.Round(seconds, 3),
            };
            JobTraffic.AddTo(line, workerTraffic, serverTraffic);
            final = line;
            context.Output.WriteLine(context.Json ? JsonSerializer.Serialize(line) : string.Create(CultureInfo.InvariantCulture,
                $"epoch {epoch}/{options.Epochs}  train loss {line["train_loss"]:0.0000}  test loss {line["test_loss"]:0.0000}  accuracy {(double)line["test_accuracy"]! * 100:0.00}%  {line["images_per_sec"]:N0} images/s  sent {(long)line["bytes_sent"]! / 1e6:0.0} MB  received {(long)line["bytes_received"]! / 1e6:0.0} MB"));
            context.Output.Flush();
        }

        if (context.Rank == 0)
        {
            WriteSummary(context, model, final, imagesTotal / Math.Max(trainSecondsTotal, 1e-9));
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }

    /// <summary>Sandblaster L-BFGS: rank 0 coordinates, every worker computes the work units it claims.</summary>
    private async Task<int> RunLbfgsAsync(WorkerContext context, Nn.Data.LabeledImages train, Nn.Data.LabeledImages test, CancellationToken cancellationToken)
    {
        var client = context.Client;
        int unitExamples = Math.Min(500, options.LbfgsHalfBatch);
        var model = Models.Create(options.Model, MnistTraining.Input, MnistTraining.Classes, Math.Max(unitExamples, 500));
        model.Initialize(options.Seed);
        int count = options.TrainLimit > 0 ? Math.Min(options.TrainLimit, train.Count) : train.Count;
        var x = new float[unitExamples * train.ImageSize];
        var y = new byte[unitExamples];
        bool straggler = options.StragglerMs > 0 && context.WorkerCount > 1 && context.Rank == context.WorkerCount - 1;
        double Gradient(ReadOnlySpan<int> examples)
        {
            if (straggler)
            {
                Thread.Sleep(options.StragglerMs);
            }
            for (int i = 0; i < examples.Length; i++)
            {
                train.Pixels.AsSpan(examples[i] * train.ImageSize, train.ImageSize).CopyTo(x.AsSpan(i * train.ImageSize));
                y[i] = train.Labels[examples[i]];
            }
            return model.ComputeGradients(x.AsSpan(0, examples.Length * train.ImageSize), y.AsSpan(0, examples.Length), examples.Length);
        }
        var solver = await SandblasterLbfgs.BindAsync(client, model, count, Gradient, new SandblasterOptions
        {
            Name = "mnist." + options.Model.Replace(':', '-').Replace(',', '-'),
            HalfBatch = options.LbfgsHalfBatch,
            UnitExamples = unitExamples,
            WeightDecay = options.WeightDecay,
            ExampleBudget = (long)options.Epochs * count,
            Seed = options.Seed,
        }, cancellationToken).ConfigureAwait(false);
        context.Log.LogInformation("mnist rank {Rank}/{Workers}: {Model}, Sandblaster L-BFGS over {Count} images, halves of {Half}, units of {Unit}",
            context.Rank, context.WorkerCount, model, count, options.LbfgsHalfBatch, unitExamples);

        var testShard = new ImageShard(test, 0, 1, options.TestLimit, options.Seed);
        var final = new Dictionary<string, object?>();
        var watch = Stopwatch.StartNew();
        int epoch = 0;
        await solver.RunAsync(async (progress, ct) =>
        {
            context.Progress.Report(new JobProgress($"L-BFGS iteration {progress.Iteration}", Math.Min(1, (double)progress.Examples / ((long)options.Epochs * count))));
            if (progress.Examples < (long)(epoch + 1) * count)
            {
                return;
            }
            epoch = (int)(progress.Examples / count);
            var (testLoss, correct, tested) = MnistTraining.Evaluate(model, testShard);
            var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, ct).ConfigureAwait(false);
            double seconds = watch.Elapsed.TotalSeconds;
            var line = new Dictionary<string, object?>
            {
                ["app"] = "mnist",
                ["epoch"] = epoch,
                ["model"] = options.Model,
                ["iterations"] = progress.Iteration,
                ["train_loss"] = Math.Round(progress.Loss, 6),
                ["test_loss"] = Math.Round(testLoss / Math.Max(1, tested), 6),
                ["test_accuracy"] = Math.Round((double)correct / Math.Max(1, tested), 6),
                ["images_per_sec"] = Math.Round(progress.Examples / Math.Max(seconds, 1e-9)),
                ["coordinator_fraction"] = Math.Round(progress.Coordinate.TotalSeconds / Math.Max(seconds, 1e-9), 4),
                ["backups"] = progress.Backups,
                ["rounds_redone"] = progress.Redone,
                ["steps_halved"] = progress.StepsHalved,
                ["seconds"] = Math.Round(seconds, 3),
            };
            JobTraffic.AddTo(line, workerTraffic, serverTraffic);
            final = line;
            context.Output.WriteLine(context.Json ? JsonSerializer.Serialize(line) : string.Create(CultureInfo.InvariantCulture,
                $"epoch {epoch}/{options.Epochs}  L-BFGS iteration {progress.Iteration}  train loss {line["train_loss"]:0.0000}  test loss {line["test_loss"]:0.0000}  accuracy {(double)line["test_accuracy"]! * 100:0.00}%  {line["images_per_sec"]:N0} images/s"));
            context.Output.Flush();
        }, cancellationToken).ConfigureAwait(false);
        if (context.Rank == 0)
        {
            await solver.Model.FetchAsync(cancellationToken).ConfigureAwait(false);
            WriteSummary(context, model, final, final.GetValueOrDefault("images_per_sec") is double rate ? rate : 0);
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }

    private void WriteSummary(WorkerContext context, Sequential model, Dictionary<string, object?> final, double imagesPerSec)
    {
        if (options.ModelOut is { } path)
        {
            ModelFile.Save(path, options.Model, model);
            context.Log.LogInformation("Wrote the model ({Parameters} parameters) to {Path}", model.ParameterCount, path);
        }
        var summary = new Dictionary<string, object?>
        {
            ["app"] = "mnist",
            ["model"] = options.Model,
            ["optimizer"] = options.Lbfgs ? "lbfgs" : options.Mode.ToString().ToLowerInvariant(),
            ["update"] = options.Lbfgs ? "lbfgs" : options.HandlerSpec,
            ["test_accuracy"] = final.GetValueOrDefault("test_accuracy"),
            ["test_loss"] = final.GetValueOrDefault("test_loss"),
            ["images_per_sec"] = Math.Round(imagesPerSec),
            ["bytes_sent"] = final.GetValueOrDefault("bytes_sent", 0L),
            ["bytes_received"] = final.GetValueOrDefault("bytes_received", 0L),
            ["epochs"] = options.Epochs,
            ["workers"] = context.WorkerCount,
            ["servers"] = context.Client.ServerCount,
            ["parameters"] = model.ParameterCount,
        };
        if (options.ModelOut is not null)
        {
            summary["model_file"] = options.ModelOut;
        }
        context.Output.WriteLine(context.Json ? JsonSerializer.Serialize(summary) : string.Create(CultureInfo.InvariantCulture,
            $"done: {options.Model} test accuracy {(double)(summary["test_accuracy"] ?? 0d) * 100:0.00}%, test loss {summary["test_loss"]:0.0000}, {summary["images_per_sec"]:N0} images/s{(options.ModelOut is null ? "" : $", model in {options.ModelOut}")}"));
    }
}
