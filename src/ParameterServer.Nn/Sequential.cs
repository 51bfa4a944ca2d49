using ParameterServer.Nn.Layers;

namespace ParameterServer.Nn;

/// <summary>
/// A feed-forward model: layers applied in order, ending in class scores trained with softmax cross-entropy. All
/// buffers are sized for <see cref="MaxBatch"/> when the model is built, so training steps allocate nothing.
/// </summary>
public sealed class Sequential : ITrainableModel
{
    private readonly Layer[] _layers;
    private readonly float[][] _outputs; // _outputs[i]: layer i's output for the current batch
    private readonly float[] _gradientA;
    private readonly float[] _gradientB;
    private readonly ParameterTensor[] _parameters;

    public Sequential(FeatureShape input, int maxBatch, params Layer[] layers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        if (layers.Length == 0)
        {
            throw new ArgumentException("a model needs at least one layer", nameof(layers));
        }
        InputShape = input;
        MaxBatch = maxBatch;
        _layers = layers;
        var counts = new Dictionary<string, int>();
        var shape = input;
        int widest = input.Size;
        foreach (var layer in layers)
        {
            int n = counts[layer.Kind] = counts.GetValueOrDefault(layer.Kind) + 1;
            layer.Build(layer.Kind + n.ToString(System.Globalization.CultureInfo.InvariantCulture), shape, maxBatch);
            shape = layer.OutputShape;
            widest = Math.Max(widest, shape.Size);
        }
        OutputShape = shape;
        _outputs = layers.Select(l => new float[maxBatch * l.OutputShape.Size]).ToArray();
        _gradientA = new float[maxBatch * widest];
        _gradientB = new float[maxBatch * widest];
        _parameters = layers.SelectMany(l => l.Tensors).ToArray();
        ParameterCount = _parameters.Sum(p => (long)p.Count);
    }

    public FeatureShape InputShape { get; }

    /// <summary>Classes: the last layer's outputs.</summary>
    public FeatureShape OutputShape { get; }

    public int MaxBatch { get; }

    public IReadOnlyList<Layer> Layers => _layers;

    public IReadOnlyList<ParameterTensor> Parameters => _parameters;

    public long ParameterCount { get; }

    /// <summary>Fresh parameters: He-uniform weights, zero biases, from <paramref name="seed"/>.</summary>
    public void Initialize(int seed)
    {
        var random = new Random(seed);
        foreach (var layer in _layers)
        {
            layer.Initialize(random);
        }
    }

    /// <summary>Class scores (logits) of a batch: <c>batch x classes</c> floats, valid until the next call.</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<float> input, int batch, bool training = false)
    {
        CheckBatch(input, batch);
        ReadOnlySpan<float> x = input;
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].Forward(x, _outputs[i], batch, training);
            x = _outputs[i];
        }
        return x[..(batch * OutputShape.Size)];
    }

    /// <summary>
    /// One training step's gradients: forward, softmax cross-entropy against <paramref name="labels"/>, backward. Each
    /// tensor's gradient is the batch mean; returns the mean loss. Parameters are not changed.
    /// </summary>
    public float ComputeGradients(ReadOnlySpan<float> input, ReadOnlySpan<byte> labels, int batch)
    {
        if (labels.Length < batch)
        {
            throw new ArgumentException($"{batch} examples need {batch} labels, got {labels.Length}", nameof(labels));
        }
        var logits = Forward(input, batch, training: true);
        float loss = SoftmaxCrossEntropy.LossAndGradient(logits, labels[..batch], OutputShape.Size, _gradientA);
        Backward(input, batch);
        return loss;
    }

    /// <summary>
    /// One training step's gradients for multi-label targets (<c>batch x classes</c> values in [0, 1], a video's tags):
    /// forward, sigmoid cross-entropy per class, backward. Gradients are batch means; returns the mean loss per example.
    /// </summary>
    public float ComputeGradients(ReadOnlySpan<float> input, ReadOnlySpan<float> targets, int batch)
    {
        int classes = OutputShape.Size;
        if (targets.Length < batch * classes)
        {
            throw new ArgumentException($"{batch} examples of {classes} classes need {batch * classes} targets, got {targets.Length}", nameof(targets));
        }
        var logits = Forward(input, batch, training: true);
        float loss = SigmoidCrossEntropy.LossAndGradient(logits, targets[..(batch * classes)], batch, _gradientA);
        Backward(input, batch);
        return loss;
    }

    // Backpropagates the loss gradient in _gradientA (d loss / d logits) through every layer.
    private void Backward(ReadOnlySpan<float> input, int batch)
    {
        Span<float> dy = _gradientA;
        Span<float> dx = _gradientB;
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            ReadOnlySpan<float> x = i == 0 ? input : _outputs[i - 1];
            // The first layer's input gradient is of no use: skip computing it.
            _layers[i].Backward(x, _outputs[i], dy, i == 0 ? default : dx, batch);
            var swap = dy;
            dy = dx;
            dx = swap;
        }
    }

    /// <summary>Mean loss and correct predictions of a labelled batch (no dropout).</summary>
    public (double Loss, int Correct) Evaluate(ReadOnlySpan<float> input, ReadOnlySpan<byte> labels, int batch)
    {
        var logits = Forward(input, batch);
        return SoftmaxCrossEntropy.Score(logits, labels[..batch], OutputShape.Size);
    }

    private void CheckBatch(ReadOnlySpan<float> input, int batch)
    {
        if (batch < 1 || batch > MaxBatch)
        {
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"the model was built for batches of 1 to {MaxBatch}");
        }
        if (input.Length < batch * InputShape.Size)
        {
            throw new ArgumentException($"a batch of {batch} inputs of {InputShape} needs {batch * InputShape.Size} floats, got {input.Length}", nameof(input));
        }
    }

    public override string ToString() => string.Join(" -> ", _layers.Select(l => l.ToString())) + $" ({ParameterCount:N0} parameters)";
}

/// <summary>
/// Independent sigmoids with the binary cross-entropy loss, summed over classes and averaged over the batch (multi-label
/// classification: YouTube-8M's tags). Stable for any logit: log(1 + e^-|z|) + max(z, 0) - y z.
/// </summary>
public static class SigmoidCrossEntropy
{
    /// <summary>Mean loss per example; writes d(mean loss)/d(logits) = (sigmoid(z) - y) / batch into <paramref name="gradient"/>.</summary>
    public static float LossAndGradient(ReadOnlySpan<float> logits, ReadOnlySpan<float> targets, int batch, Span<float> gradient)
    {
        if (targets.Length != logits.Length || gradient.Length < logits.Length || batch < 1)
        {
            throw new ArgumentException($"{logits.Length} logits need as many targets and gradients, got {targets.Length} and {gradient.Length}");
        }
        double loss = 0;
        float scale = 1f / batch;
        for (int i = 0; i < logits.Length; i++)
        {
            float z = logits[i], y = targets[i];
            loss += MathF.Log(1 + MathF.Exp(-MathF.Abs(z))) + MathF.Max(z, 0) - (y * z);
            gradient[i] = ((1 / (1 + MathF.Exp(-z))) - y) * scale;
        }
        return (float)(loss / batch);
    }
}

/// <summary>Softmax over each example's scores with the cross-entropy loss, computed stably (max subtracted).</summary>
public static class SoftmaxCrossEntropy
{
    /// <summary>Mean loss over the batch; writes d(mean loss)/d(logits) into <paramref name="gradient"/>.</summary>
    public static float LossAndGradient(ReadOnlySpan<float> logits, ReadOnlySpan<byte> labels, int classes, Span<float> gradient)
    {
        int batch = labels.Length;
        double loss = 0;
        float scale = 1f / batch;
        for (int b = 0; b < batch; b++)
        {
            var scores = logits.Slice(b * classes, classes);
            var g = gradient.Slice(b * classes, classes);
            int label = CheckLabel(labels[b], classes);
            float max = System.Numerics.Tensors.TensorPrimitives.Max(scores);
            double sum = 0;
            for (int c = 0; c < classes; c++)
            {
                float e = MathF.Exp(scores[c] - max);
                g[c] = e;
                sum += e;
            }
            loss += Math.Log(sum) - (scores[label] - max);
            float inverse = (float)(1.0 / sum);
            for (int c = 0; c < classes; c++)
            {
                g[c] = g[c] * inverse * scale;
            }
            g[label] -= scale;
        }
        return (float)(loss / batch);
    }

    /// <summary>Summed loss is not returned: the mean loss and the number of examples whose top score is their label.</summary>
    public static (double Loss, int Correct) Score(ReadOnlySpan<float> logits, ReadOnlySpan<byte> labels, int classes)
    {
        int batch = labels.Length;
        double loss = 0;
        int correct = 0;
        for (int b = 0; b < batch; b++)
        {
            var scores = logits.Slice(b * classes, classes);
            int label = CheckLabel(labels[b], classes);
            float max = System.Numerics.Tensors.TensorPrimitives.Max(scores);
            int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(scores);
            double sum = 0;
            for (int c = 0; c < classes; c++)
            {
                sum += MathF.Exp(scores[c] - max);
            }
            loss += Math.Log(sum) - (scores[label] - max);
            correct += best == label ? 1 : 0;
        }
        return (loss / batch, correct);
    }

    private static int CheckLabel(byte label, int classes) =>
        label < classes ? label : throw new ArgumentException($"label {label} is not one of the model's {classes} classes");
}
