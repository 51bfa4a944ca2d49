namespace ParameterServer.Nn.Layers;

/// <summary>The shape of one example's features between layers: channels x height x width (a flat vector is C x 1 x 1).</summary>
public readonly record struct FeatureShape(int Channels, int Height, int Width)
{
    /// <summary>Floats per example.</summary>
    public int Size => Channels * Height * Width;

    public override string ToString() => Height == 1 && Width == 1 ? $"{Channels}" : $"{Channels}x{Height}x{Width}";
}

/// <summary>
/// One stage of a <see cref="Sequential"/> model. Batches are row-major, example after example; each layer keeps the
/// buffers it needs for the largest batch (allocated once, when the model is built), so a training step allocates nothing.
/// </summary>
public abstract class Layer
{
    private protected Layer()
    {
    }

    /// <summary>Set when the model is built.</summary>
    public FeatureShape InputShape { get; private set; }

    /// <summary>Set when the model is built.</summary>
    public FeatureShape OutputShape { get; private set; }

    /// <summary>Named by the model (conv1, dense2, ...); prefixes the layer's tensor names.</summary>
    public string Name { get; private set; } = "";

    internal void Build(string name, FeatureShape input, int maxBatch)
    {
        Name = name;
        InputShape = input;
        OutputShape = Bind(input, maxBatch);
    }

    /// <summary>Short kind for names: conv, dense, pool, relu ...</summary>
    internal abstract string Kind { get; }

    /// <summary>Allocates parameters and buffers for this input shape; returns the output shape.</summary>
    private protected abstract FeatureShape Bind(FeatureShape input, int maxBatch);

    internal abstract void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training);

    /// <summary>
    /// From the output gradient <paramref name="dy"/>, writes the parameters' gradients (the sum over the batch of the
    /// per-example gradients dy was scaled for) and, when <paramref name="dx"/> is not empty, the input gradient.
    /// </summary>
    internal abstract void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch);

    internal virtual IEnumerable<ParameterTensor> Tensors => [];

    internal virtual void Initialize(Random random)
    {
    }

    public override string ToString() => $"{Name} {InputShape} -> {OutputShape}";

    /// <summary>He (Kaiming) uniform: keeps activations' variance through ReLU layers.</summary>
    private protected static void HeUniform(Span<float> weights, int fanIn, Random random)
    {
        float bound = MathF.Sqrt(6f / fanIn);
        for (int i = 0; i < weights.Length; i++)
        {
            weights[i] = ((2f * random.NextSingle()) - 1f) * bound;
        }
    }
}
