namespace ParameterServer.Nn.Distributed;

/// <summary>
/// Where each tensor lives in the model's dense table: tensors one after another, each starting on a row boundary, so
/// a tensor is a key range and the whole model one range [0, Rows) spread over the servers block by block.
/// </summary>
public sealed class ParameterLayout
{
    public ParameterLayout(IReadOnlyList<ParameterTensor> tensors, int rowWidth)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfLessThan(rowWidth, 1);
        if (tensors.Count == 0)
        {
            throw new ArgumentException("the model has no parameter tensors", nameof(tensors));
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        var offsets = new int[tensors.Count];
        long position = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            if (!names.Add(tensors[i].Name))
            {
                throw new ArgumentException($"two tensors of the model are named '{tensors[i].Name}': names must be unique", nameof(tensors));
            }
            offsets[i] = checked((int)position);
            position += (tensors[i].Count + rowWidth - 1) / rowWidth * (long)rowWidth;
        }
        Tensors = tensors;
        RowWidth = rowWidth;
        Offsets = offsets;
        Length = checked((int)position);
    }

    public IReadOnlyList<ParameterTensor> Tensors { get; }

    /// <summary>Floats per key.</summary>
    public int RowWidth { get; }

    /// <summary>Each tensor's first float in the flat vector (a multiple of <see cref="RowWidth"/>).</summary>
    public IReadOnlyList<int> Offsets { get; }

    /// <summary>Floats in the flat vector, padding included.</summary>
    public int Length { get; }

    /// <summary>Keys of the table.</summary>
    public int Rows => Length / RowWidth;

    /// <summary>Copies every tensor's values (or gradients) into the flat vector; the padding stays as it is.</summary>
    public void Gather(Span<float> flat, bool gradients)
    {
        for (int i = 0; i < Tensors.Count; i++)
        {
            var source = gradients ? Tensors[i].Gradient.Span : Tensors[i].Value.Span;
            source.CopyTo(flat.Slice(Offsets[i], source.Length));
        }
    }

    /// <summary>Sets every tensor's values to <paramref name="initial"/> + <paramref name="offset"/>, element-wise.</summary>
    public void ScatterSum(ReadOnlySpan<float> initial, ReadOnlySpan<float> offset)
    {
        for (int i = 0; i < Tensors.Count; i++)
        {
            var value = Tensors[i].Value.Span;
            System.Numerics.Tensors.TensorPrimitives.Add(initial.Slice(Offsets[i], value.Length), offset.Slice(Offsets[i], value.Length), value);
        }
    }
}
