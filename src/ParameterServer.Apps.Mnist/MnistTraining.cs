using System.Numerics.Tensors;
using ParameterServer.Nn;
using ParameterServer.Nn.Data;
using ParameterServer.Nn.Layers;

namespace ParameterServer.Apps.Mnist;

/// <summary>One worker's share of a labelled image set: every W-th image from its rank on, shuffled each epoch, in batches.</summary>
public sealed class ImageShard
{
    private readonly LabeledImages _images;
    private readonly int[] _order;
    private readonly Random _random;

    public ImageShard(LabeledImages images, int rank, int workers, int limit, int seed)
    {
        _images = images;
        int count = limit > 0 ? Math.Min(limit, images.Count) : images.Count;
        _order = Enumerable.Range(0, count).Where(i => i % workers == rank).ToArray();
        _random = new Random(seed + rank);
    }

    public int Count => _order.Length;

    public int ImageSize => _images.ImageSize;

    public void Shuffle() => _random.Shuffle(_order);

    /// <summary>Copies batch <paramref name="index"/> (of <paramref name="size"/> images in the current order) into x and y; returns its size.</summary>
    public int Fill(int index, int size, Span<float> x, Span<byte> y)
    {
        int start = index * size;
        int n = Math.Min(size, _order.Length - start);
        for (int i = 0; i < n; i++)
        {
            int k = _order[start + i];
            _images.Pixels.AsSpan(k * ImageSize, ImageSize).CopyTo(x.Slice(i * ImageSize, ImageSize));
            y[i] = _images.Labels[k];
        }
        return Math.Max(n, 0);
    }
}

/// <summary>The parts of a training step the distributed app and the single-process baseline share.</summary>
public static class MnistTraining
{
    /// <summary>The MNIST input: one 28x28 channel.</summary>
    public static FeatureShape Input => new(1, 28, 28);

    public const int Classes = 10;

    /// <summary>The learning-rate factor at a step: cosine from 1 down to 0 over the run, or 1 throughout.</summary>
    public static float Schedule(string schedule, long step, long totalSteps) =>
        schedule == "cosine" && totalSteps > 0 ? (float)(0.5 * (1 + Math.Cos(Math.PI * Math.Min(step, totalSteps) / totalSteps))) : 1f;

    /// <summary>L2 weight decay: every gradient += decay * its value.</summary>
    public static void AddWeightDecay(ITrainableModel model, float decay)
    {
        if (decay == 0f)
        {
            return;
        }
        foreach (var tensor in model.Parameters)
        {
            TensorPrimitives.MultiplyAdd(tensor.Value.Span, decay, tensor.Gradient.Span, tensor.Gradient.Span);
        }
    }

    /// <summary>Summed loss and correct predictions over a shard, in batches of the model's largest size.</summary>
    public static (double LossSum, int Correct, int Count) Evaluate(Sequential model, ImageShard shard)
    {
        int size = model.MaxBatch;
        var x = new float[size * shard.ImageSize];
        var y = new byte[size];
        double loss = 0;
        int correct = 0, count = 0;
        for (int b = 0; ; b++)
        {
            int n = shard.Fill(b, size, x, y);
            if (n == 0)
            {
                break;
            }
            var (batchLoss, batchCorrect) = model.Evaluate(x.AsSpan(0, n * shard.ImageSize), y.AsSpan(0, n), n);
            loss += batchLoss * n;
            correct += batchCorrect;
            count += n;
        }
        return (loss, correct, count);
    }
}

/// <summary>`pserver predict` for a model written by `pserver train mnist --model-out`: scores the idx test set.</summary>
public static class MnistPredictor
{
    /// <summary>Whether a file is a model file of ours (PSNN magic) rather than a logistic-regression text model.</summary>
    public static bool IsModelFile(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return stream.Read(magic) == 4 && magic.SequenceEqual("PSNN"u8);
    }

    /// <summary>Test accuracy and mean loss of the saved model on the first <paramref name="limit"/> test images (0: all).</summary>
    public static (double Accuracy, double Loss, int Images, string Model) Score(string modelPath, string dataDirectory, int limit)
    {
        string spec = ModelFile.ReadSpec(modelPath);
        var model = Models.Create(spec, MnistTraining.Input, MnistTraining.Classes, 500);
        ModelFile.Load(modelPath, model);
        var test = ParameterServer.Nn.Data.Mnist.LoadDirectory(dataDirectory, train: false);
        var (loss, correct, count) = MnistTraining.Evaluate(model, new ImageShard(test, 0, 1, limit, 0));
        return ((double)correct / Math.Max(1, count), loss / Math.Max(1, count), count, spec);
    }
}
