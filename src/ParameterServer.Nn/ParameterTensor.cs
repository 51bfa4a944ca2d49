namespace ParameterServer.Nn;

/// <summary>
/// One tensor of a model's parameters, as the parameter-server adapter sees it: a name, a shape, and where the values
/// and their gradients live. <see cref="Value"/> and <see cref="Gradient"/> hold <c>product(Shape)</c> floats each,
/// row-major; the model writes gradients, the adapter writes values. Any model can expose its tensors this way: a
/// TorchSharp module, for one, by wrapping each parameter's and gradient's data pointer in a <see cref="Memory{T}"/>.
/// </summary>
public sealed class ParameterTensor
{
    public ParameterTensor(string name, IReadOnlyList<int> shape, Memory<float> value, Memory<float> gradient)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 1)
            {
                throw new ArgumentException($"tensor '{name}': every dimension must be positive, got [{string.Join(", ", shape)}]", nameof(shape));
            }
            count *= d;
        }
        if (shape.Count == 0 || count > int.MaxValue)
        {
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] is empty or holds more than 2^31 values", nameof(shape));
        }
        if (value.Length != count || gradient.Length != count)
        {
            throw new ArgumentException($"tensor '{name}' of shape {Describe(shape)} holds {count} values; its value has {value.Length} and its gradient {gradient.Length}");
        }
        Name = name;
        Shape = shape.ToArray();
        Value = value;
        Gradient = gradient;
    }

    /// <summary>Unique within its model, stable across processes (the adapter matches tensors by it).</summary>
    public string Name { get; }

    public IReadOnlyList<int> Shape { get; }

    /// <summary>Values: product of the shape.</summary>
    public int Count => Value.Length;

    public Memory<float> Value { get; }

    public Memory<float> Gradient { get; }

    /// <summary>A shape as text, e.g. <c>[6, 1, 5, 5]</c>.</summary>
    public static string Describe(IReadOnlyList<int> shape) => $"[{string.Join(", ", shape)}]";

    public override string ToString() => $"{Name} {Describe(Shape)}";
}

/// <summary>
/// What the parameter-server adapter needs of a model: its parameter tensors, in a fixed order. Gradients are those
/// of the last backward pass (the mean over its batch).
/// </summary>
public interface ITrainableModel
{
    IReadOnlyList<ParameterTensor> Parameters { get; }
}
