using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Extensions;

namespace ParameterServer.Apps.LogReg;

/// <summary>What one pass over a shard did.</summary>
internal readonly record struct EpochResult(long Rows, double LossSum, int Pushes);

/// <summary>
/// The minibatch loop, identical for the cluster and the single-process baseline: pull the weights of the
/// keys a batch touches, compute the logistic loss gradient, push it (the servers' handler does the update).
/// Batches are parsed on a background thread (<see cref="BatchSource"/>); with bounded delay > 0 the next
/// batch's pull is issued before the current gradient is computed, so the network overlaps the math.
/// </summary>
internal sealed class LogRegTrainer(IWeightStore weights, int batchSize, bool prefetch, bool kkt = false)
{
    private float[][] _weights = [new float[256], new float[256]];
    private float[] _gradient = new float[256];

    public EpochResult Train(LibSvmReader reader, int roundsAtLeast, Action<double>? progress, CancellationToken cancellationToken)
    {
        using var source = new BatchSource(reader, batchSize);
        int current = 0;
        var batch = source.Next();
        long ticket = batch is null ? -1 : Pull(batch, 0);
        long rows = 0;
        double loss = 0;
        int pushes = 0;
        while (batch is not null)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int other = 1 - current;
            MiniBatch? next = null;
            long nextTicket = -1;
            if (prefetch)
            {
                next = source.Next();
                nextTicket = next is null ? -1 : Pull(next, other);
            }
            weights.Wait(ticket);
            double batchLoss = Gradient(batch, _weights[current]);
            loss += batchLoss;
            if (kkt)
            {
                KktFilter.SetWeights(_weights[current].AsSpan(0, batch.UniqueCount)); // the KKT filter drops gradients of zero weights
            }
            weights.Push(batch.UniqueKeys, _gradient.AsSpan(0, batch.UniqueCount));
            pushes++;
            rows += batch.Rows;
            weights.StepDone(batch.Rows, batchLoss / Math.Max(1, batch.Rows));
            source.Recycle(batch);
            if (!prefetch)
            {
                next = source.Next();
                nextTicket = next is null ? -1 : Pull(next, other);
            }
            if ((pushes & 15) == 0)
            {
                progress?.Invoke(reader.Progress);
            }
            current = other;
            ticket = nextTicket;
            batch = next;
        }
        // Sync tables need every worker's push each round: a worker that ran out of data sends empty ones.
        for (; pushes < roundsAtLeast; pushes++)
        {
            weights.Push([], []);
        }
        weights.WaitAll();
        return new EpochResult(rows, loss, pushes);
    }

    public void Evaluate(LibSvmReader reader, BinaryMetrics metrics, CancellationToken cancellationToken)
    {
        using var source = new BatchSource(reader, batchSize);
        while (source.Next() is { } batch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            weights.Wait(Pull(batch, 0));
            var w = _weights[0];
            var starts = batch.RowStarts;
            var slots = batch.Slots;
            var values = batch.Values;
            var labels = batch.Labels;
            for (int r = 0; r < batch.Rows; r++)
            {
                double z = 0;
                for (int j = starts[r]; j < starts[r + 1]; j++)
                {
                    z += w[slots[j]] * values[j];
                }
                metrics.Add(labels[r], Sigmoid(z));
            }
            source.Recycle(batch);
        }
    }

    private long Pull(MiniBatch batch, int which)
    {
        if (_weights[which].Length < batch.UniqueCount)
        {
            _weights[which] = new float[batch.UniqueCount * 2];
        }
        return weights.Pull(batch.UniqueKeys, _weights[which].AsMemory(0, batch.UniqueCount));
    }

    /// <summary>Fills the gradient of the summed log loss over the batch's unique keys; returns the loss before the update.</summary>
    private double Gradient(MiniBatch batch, float[] w)
    {
        if (_gradient.Length < batch.UniqueCount)
        {
            _gradient = new float[batch.UniqueCount * 2];
        }
        var gradient = _gradient.AsSpan(0, batch.UniqueCount);
        gradient.Clear();
        var starts = batch.RowStarts;
        var slots = batch.Slots;
        var values = batch.Values;
        var labels = batch.Labels;
        double loss = 0;
        for (int r = 0; r < batch.Rows; r++)
        {
            int begin = starts[r];
            int end = starts[r + 1];
            float z = 0;
            for (int j = begin; j < end; j++)
            {
                z += w[slots[j]] * values[j];
            }
            float p = Sigmoid(z);
            float y = labels[r];
            loss += LogLoss(y, p);
            float g = p - y;
            for (int j = begin; j < end; j++)
            {
                gradient[slots[j]] += g * values[j];
            }
        }
        return loss;
    }

    private static float Sigmoid(float z) => 1f / (1f + MathF.Exp(-z));

    private static double Sigmoid(double z) => 1 / (1 + Math.Exp(-z));

    private static double LogLoss(float y, float p)
    {
        float q = y > 0 ? p : 1 - p;
        return -Math.Log(Math.Max(q, 1e-15f));
    }
}
