using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.Yt8m.Data;
using ParameterServer.Hosting;
using ParameterServer.Nn;
using ParameterServer.Nn.Distributed;

namespace ParameterServer.Apps.Yt8m;

/// <summary>
/// Tags YouTube-8M videos with a model whose parameters live in a dense table partitioned over the servers (the seed
/// article's scenario). Each worker reads every W-th shard and trains with Downpour SGD through the model adapter;
/// rank 0 scores the held-out shards with GAP@20, Hit@1 and PERR as the YouTube-8M evaluation does.
/// </summary>
public sealed class Yt8mApp(Yt8mOptions options) : IPsApp
{
    private const int Stride = 8; // metrics per epoch: loss sum, examples, seconds, workers, steps, pull, push and compute seconds

    public string Name => "yt8m";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        if (client.Joined)
        {
            throw new ArgumentException("yt8m splits the shards by rank when the job starts, so a worker cannot join a running yt8m job; start the job with more --workers");
        }
        var vocabulary = Vocabulary.Read(options.Vocabulary);
        int labels = vocabulary.Count;
        var (trainFiles, testFiles) = options.Shards();
        var mine = trainFiles.Where((_, i) => i % context.WorkerCount == context.Rank).ToList();
        if (mine.Count == 0)
        {
            throw new ArgumentException($"{trainFiles.Count} training shards for {context.WorkerCount} workers: rank {context.Rank} has none; generate more shards (--shards) or start fewer workers");
        }
        var (features, videoLabels, count, skipped, firstSkipped) = Load(mine, labels);
        if (skipped > 0)
        {
            context.Log.LogWarning("yt8m rank {Rank}: skipped {Skipped} bad records, the first: {First}", context.Rank, skipped, firstSkipped);
        }
        if (count < options.Batch)
        {
            throw new ArgumentException($"rank {context.Rank} read {count} videos from {string.Join(", ", mine)}: fewer than one batch of {options.Batch}");
        }
        var model = Yt8mModels.Create(options.Model, options.Experts, labels, options.Batch);
        model.Initialize(options.Seed);
        Yt8mModels.SetPriorBiases(model, videoLabels); // rank 0's are the job's
        var distributed = await DistributedModel.BindAsync(client, model, new DistributedModelOptions
        {
            Name = "yt8m." + options.Model,
            Update = options.Update,
            Consistency = options.Consistency,
        }, cancellationToken).ConfigureAwait(false);
        var metrics = await client.DeclareTableAsync(new TableSpec("yt8m.metrics") { DenseSize = (ulong)((options.Epochs + 1) * Stride), BlockKeys = Stride }, cancellationToken).ConfigureAwait(false);
        int steps = count / options.Batch;
        context.Log.LogInformation("yt8m rank {Rank}/{Workers}: {Videos} videos from {Shards} shards ({Skipped} bad records skipped), {Model} ({Parameters:N0} parameters), {Steps} steps of {Batch} per epoch, {Update}",
            context.Rank, context.WorkerCount, count, mine.Count, skipped, options.Model, model.ParameterCount, steps, options.Batch, options.Update);

        var x = new float[options.Batch * Video.FeatureSize];
        var y = new float[options.Batch * labels];
        var order = Enumerable.Range(0, count).ToArray();
        var random = new Random(options.Seed + context.Rank);
        double examplesPerSecond = 0, seconds = 0;
        long examples = 0;
        var timing = new double[5]; // every worker's steps, rank 0's seconds in steps, every worker's pull, push and compute seconds
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            random.Shuffle(order);
            var (pullBefore, pushBefore) = (distributed.FetchWait, distributed.PushTime);
            var watch = Stopwatch.StartNew();
            double lossSum = 0;
            long computeTicks = 0;
            for (int step = 0; step < steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Array.Clear(y);
                for (int b = 0; b < options.Batch; b++)
                {
                    int v = order[(step * options.Batch) + b];
                    features.AsSpan(v * Video.FeatureSize, Video.FeatureSize).CopyTo(x.AsSpan(b * Video.FeatureSize));
                    foreach (int label in videoLabels[v])
                    {
                        y[(b * labels) + label] = 1; // multi-hot targets, built per batch (a row per video would be 15 KB)
                    }
                }
                distributed.BeforeStep();
                long computeStart = Stopwatch.GetTimestamp();
                double batchLoss = model.ComputeGradients(x, y, options.Batch);
                lossSum += batchLoss;
                computeTicks += Stopwatch.GetTimestamp() - computeStart;
                distributed.AfterStep();
                client.Diagnostics.ReportStep(options.Batch, batchLoss);
                if (context.Rank == 0 && step % 20 == 0)
                {
                    context.Progress.Report(new JobProgress($"epoch {epoch}/{options.Epochs}", (double)step / steps));
                }
            }
            double stepSeconds = watch.Elapsed.TotalSeconds; // the steps alone, before the epoch's last pushes are waited for
            await distributed.FinishAsync(cancellationToken).ConfigureAwait(false);
            double epochSeconds = watch.Elapsed.TotalSeconds;
            ulong first = (ulong)(epoch * Stride);
            float pull = (float)(distributed.FetchWait - pullBefore).TotalSeconds, push = (float)(distributed.PushTime - pushBefore).TotalSeconds;
            await client.WaitAsync(metrics.PushRange(first, [(float)lossSum, steps * options.Batch, (float)epochSeconds, 1, steps, pull, push, (float)Stopwatch.GetElapsedTime(0, computeTicks).TotalSeconds]), cancellationToken).ConfigureAwait(false);
            timing[1] += stepSeconds;
            JobTraffic.Publish(client);
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            if (context.Rank != 0)
            {
                continue;
            }
            var row = new float[Stride];
            await client.WaitAsync(metrics.PullRange(first, row), cancellationToken).ConfigureAwait(false);
            double mean = row[2] / Math.Max(1, row[3]);
            examples += (long)row[1];
            timing[0] += row[4];
            timing[2] += row[5];
            timing[3] += row[6];
            timing[4] += row[7];
            seconds += mean;
            examplesPerSecond = examples / Math.Max(seconds, 1e-9);
            double loss = row[0] / Math.Max(1, row[1] / options.Batch);
            context.Output.WriteLine(context.Json
                ? JsonSerializer.Serialize(new Dictionary<string, object> { ["app"] = "yt8m", ["epoch"] = epoch, ["train_loss"] = Math.Round(loss, 5), ["examples_per_sec"] = Math.Round(row[1] / Math.Max(mean, 1e-9)) })
                : string.Create(CultureInfo.InvariantCulture, $"epoch {epoch}/{options.Epochs}  train loss {loss:0.0000}  {row[1] / Math.Max(mean, 1e-9):N0} examples/s"));
            context.Output.Flush();
        }

        if (context.Rank == 0)
        {
            await distributed.FetchAsync(cancellationToken).ConfigureAwait(false); // every worker's pushes are in
            if (options.ModelOut is { } path)
            {
                ModelFile.Save(path, Yt8mPredictor.Spec(options), model);
                context.Log.LogInformation("Wrote the model ({Parameters:N0} parameters) to {Path}", model.ParameterCount, path);
            }
            var evaluation = Evaluate(model, testFiles, labels);
            var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
            var summary = new Dictionary<string, object?>
            {
                ["app"] = "yt8m",
                ["model"] = options.Model,
                ["gap"] = Math.Round(evaluation.Gap(), 4),
                ["hit_at_1"] = Math.Round(evaluation.HitAt1, 4),
                ["perr"] = Math.Round(evaluation.Perr, 4),
                ["test_videos"] = evaluation.Videos,
                ["examples_per_sec"] = Math.Round(examplesPerSecond),
                ["parameters"] = model.ParameterCount,
                ["workers"] = context.WorkerCount,
                ["servers"] = client.ServerCount,
            };
            if (options.ModelOut is not null)
            {
                summary["model_file"] = options.ModelOut;
            }
            // Time per step, split: rank 0's own steps' time; every worker's forward and backward passes, waits for pulls
            // and push hand-overs, per step.
            double stepMs = timing[1] / ((double)options.Epochs * steps) * 1000, pullMs = timing[2] / Math.Max(1, timing[0]) * 1000, pushMs = timing[3] / Math.Max(1, timing[0]) * 1000;
            summary["step_ms"] = Math.Round(stepMs, 1);
            summary["compute_ms"] = Math.Round(timing[4] / Math.Max(1, timing[0]) * 1000, 1);
            summary["pull_ms"] = Math.Round(pullMs, 1);
            summary["push_ms"] = Math.Round(pushMs, 1);
            JobTraffic.AddTo(summary, workerTraffic, serverTraffic);
            summary["bytes_per_server"] = (serverTraffic.BytesSent + serverTraffic.BytesReceived) / Math.Max(1, client.ServerCount);
            summary.Remove("traffic");
            string truth = Path.Combine(Directory.Exists(options.Data) ? options.Data : Path.GetDirectoryName(options.Data) ?? ".", "truth.json");
            if (File.Exists(truth) && options.Test is null)
            {
                using var document = JsonDocument.Parse(File.ReadAllText(truth));
                summary["true_model_gap"] = document.RootElement.GetProperty("true_model_gap").GetDouble();
            }
            context.Output.WriteLine(context.Json ? JsonSerializer.Serialize(summary) : string.Create(CultureInfo.InvariantCulture,
                $"done: GAP@20 {summary["gap"]}, Hit@1 {summary["hit_at_1"]}, PERR {summary["perr"]} on {evaluation.Videos:N0} held-out videos{(summary.TryGetValue("true_model_gap", out var best) ? $" (the generator's true model: GAP@20 {best})" : "")}, {examplesPerSecond:N0} examples/s"));
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }

    // This worker's videos in memory: features (1,152 floats per video) and label ids.
    private (float[] Features, List<int[]> Labels, int Count, long Skipped, string? FirstSkipped) Load(IReadOnlyList<string> files, int labels)
    {
        var features = new List<float>();
        var videoLabels = new List<int[]>();
        using var reader = new VideoReader(files, labels, options.SkipBadRecords);
        while (reader.TryRead(out var video))
        {
            features.AddRange(video.MeanRgb);
            features.AddRange(video.MeanAudio);
            videoLabels.Add(video.Labels);
        }
        return ([.. features], videoLabels, videoLabels.Count, reader.Skipped, reader.FirstSkipped);
    }

    private Evaluation Evaluate(Sequential model, IReadOnlyList<string> files, int labels)
    {
        var evaluation = new Evaluation();
        using var reader = new VideoReader(files, labels, options.SkipBadRecords);
        var x = new float[Video.FeatureSize];
        while (reader.TryRead(out var video))
        {
            video.MeanRgb.CopyTo(x, 0);
            video.MeanAudio.CopyTo(x, Video.RgbSize);
            evaluation.Add(model.Forward(x, 1), video.Labels);
        }
        return evaluation;
    }
}
