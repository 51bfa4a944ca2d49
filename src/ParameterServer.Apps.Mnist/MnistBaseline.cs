using System.Diagnostics;
using System.Numerics.Tensors;
using ParameterServer.Nn;
using ParameterServer.Nn.Distributed;
using ParameterServer.Server;
using MnistFiles = ParameterServer.Nn.Data.Mnist;

namespace ParameterServer.Apps.Mnist;

/// <summary>
/// The single-process loop `pserver bench mnist` measures the cluster against: the same model, batch, shard order,
/// weight decay and schedule as one worker of <see cref="MnistApp"/>, and the same store and update handler a server
/// uses (a <see cref="LocalTable"/>), with the parameters in local memory and no network.
/// </summary>
public static class MnistBaseline
{
    /// <summary>Images per second of each epoch.</summary>
    public static List<double> Measure(MnistOptions options, CancellationToken cancellationToken)
    {
        options.Validate();
        var train = MnistFiles.LoadDirectory(options.Data, train: true);
        var shard = new ImageShard(train, 0, 1, options.TrainLimit, options.Seed);
        var model = Models.Create(options.Model, MnistTraining.Input, MnistTraining.Classes, options.Batch);
        model.Initialize(options.Seed);
        var layout = new ParameterLayout(model.Parameters, new DistributedModelOptions().RowWidth);
        var table = new LocalTable(new TableSpec("baseline", layout.RowWidth) { DenseSize = (ulong)layout.Rows, Handler = options.HandlerSpec });
        var keys = new ulong[layout.Rows];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = (ulong)i;
        }
        var initial = new float[layout.Length];
        var offsets = new float[layout.Length];
        var gradients = new float[layout.Length];
        layout.Gather(initial, gradients: false);

        int steps = shard.Count / options.Batch;
        if (steps == 0)
        {
            throw new ArgumentException($"{shard.Count} training images are fewer than one batch of {options.Batch}");
        }
        long totalSteps = (long)steps * options.Epochs;
        var x = new float[options.Batch * shard.ImageSize];
        var y = new byte[options.Batch];
        float decay = (float)options.WeightDecay;
        var rates = new List<double>();
        long step = 0;
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            shard.Shuffle();
            var watch = Stopwatch.StartNew();
            for (int s = 0; s < steps; s++, step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                // The worker's step: fetch, forward and backward, decay, push; here fetch and push are copies.
                table.Read(keys, offsets);
                layout.ScatterSum(initial, offsets);
                shard.Fill(s, options.Batch, x, y);
                model.ComputeGradients(x, y, options.Batch);
                MnistTraining.AddWeightDecay(model, decay);
                layout.Gather(gradients, gradients: true);
                TensorPrimitives.Multiply(gradients, MnistTraining.Schedule(options.Schedule, step, totalSteps), gradients);
                table.Apply(keys, gradients);
            }
            rates.Add(steps * options.Batch / watch.Elapsed.TotalSeconds);
        }
        return rates;
    }
}
