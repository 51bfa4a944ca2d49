using System.Numerics;
using System.Numerics.Tensors;

namespace ParameterServer.Nn.Layers;

/// <summary>max(x, 0).</summary>
public sealed class Relu : Layer
{
    internal override string Kind => "relu";

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch) => input;

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int n = batch * InputShape.Size;
        TensorPrimitives.Max(x[..n], 0f, y[..n]);
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        int n = batch * InputShape.Size;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                var open = Vector.GreaterThan(new Vector<float>(y.Slice(i)), Vector<float>.Zero);
                Vector.ConditionalSelect(open, new Vector<float>(dy.Slice(i)), Vector<float>.Zero).CopyTo(dx.Slice(i));
            }
        }
        for (; i < n; i++)
        {
            dx[i] = y[i] > 0f ? dy[i] : 0f;
        }
    }
}

/// <summary>tanh(x).</summary>
public sealed class Tanh : Layer
{
    internal override string Kind => "tanh";

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch) => input;

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int n = batch * InputShape.Size;
        TensorPrimitives.Tanh(x[..n], y[..n]);
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        // dx = dy * (1 - y^2)
        int n = batch * InputShape.Size;
        TensorPrimitives.Multiply(y[..n], y[..n], dx[..n]);
        TensorPrimitives.Subtract(1f, dx[..n], dx[..n]);
        TensorPrimitives.Multiply(dx[..n], dy[..n], dx[..n]);
    }
}

/// <summary>Inverted dropout: in training, each value is zeroed with probability p and the rest scaled by 1/(1-p); the identity otherwise.</summary>
public sealed class Dropout : Layer
{
    private float[] _mask = [];
    private Random _random = new(0);

    public Dropout(float probability)
    {
        if (!(probability is >= 0f and < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "dropout probability must be in [0, 1)");
        }
        Probability = probability;
    }

    public float Probability { get; }

    internal override string Kind => "dropout";

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch)
    {
        _mask = new float[maxBatch * input.Size];
        return input;
    }

    internal override void Initialize(Random random) => _random = new Random(random.Next());

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int n = batch * InputShape.Size;
        if (!training || Probability == 0f)
        {
            x[..n].CopyTo(y);
            Array.Fill(_mask, 1f, 0, n);
            return;
        }
        float keep = 1f / (1f - Probability);
        for (int i = 0; i < n; i++)
        {
            _mask[i] = _random.NextSingle() >= Probability ? keep : 0f;
        }
        TensorPrimitives.Multiply(x[..n], _mask.AsSpan(0, n), y[..n]);
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        int n = batch * InputShape.Size;
        TensorPrimitives.Multiply(dy[..n], _mask.AsSpan(0, n), dx[..n]);
    }
}
