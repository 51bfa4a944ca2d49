using System.Numerics.Tensors;
using ParameterServer.Nn.Kernels;

namespace ParameterServer.Nn.Layers;

/// <summary>
/// A 2-D convolution with stride 1 and zero padding, as im2col + GEMM: each image's patches become the columns of a
/// [C*k*k, OH*OW] matrix (kept from the forward pass for the backward one), and y = W col + b with W of shape
/// [filters, C, k, k].
/// </summary>
public sealed class Conv2d : Layer
{
    private float[] _weight = [];
    private float[] _bias = [];
    private float[] _weightGradient = [];
    private float[] _biasGradient = [];
    private float[] _columns = [];
    private float[] _columnGradient = [];
    private ParameterTensor[] _tensors = [];
    private int _patch; // C*k*k
    private int _positions; // OH*OW

    public Conv2d(int filters, int kernel, int padding = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(filters, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kernel, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        Filters = filters;
        Kernel = kernel;
        Padding = padding;
    }

    public int Filters { get; }

    public int Kernel { get; }

    public int Padding { get; }

    internal override string Kind => "conv";

    internal override IEnumerable<ParameterTensor> Tensors => _tensors;

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch)
    {
        int outHeight = input.Height + (2 * Padding) - Kernel + 1;
        int outWidth = input.Width + (2 * Padding) - Kernel + 1;
        if (outHeight < 1 || outWidth < 1)
        {
            throw new ArgumentException($"{Name}: a {Kernel}x{Kernel} kernel with padding {Padding} does not fit an input of {input}");
        }
        _patch = input.Channels * Kernel * Kernel;
        _positions = outHeight * outWidth;
        _weight = new float[Filters * _patch];
        _weightGradient = new float[_weight.Length];
        _bias = new float[Filters];
        _biasGradient = new float[Filters];
        _columns = new float[maxBatch * _patch * _positions];
        _columnGradient = new float[_patch * _positions];
        _tensors =
        [
            new ParameterTensor(Name + ".weight", [Filters, input.Channels, Kernel, Kernel], _weight, _weightGradient),
            new ParameterTensor(Name + ".bias", [Filters], _bias, _biasGradient),
        ];
        return new FeatureShape(Filters, outHeight, outWidth);
    }

    internal override void Initialize(Random random)
    {
        HeUniform(_weight, _patch, random);
        Array.Clear(_bias);
    }

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int inSize = InputShape.Size;
        int outSize = OutputShape.Size;
        for (int b = 0; b < batch; b++)
        {
            var columns = _columns.AsSpan(b * _patch * _positions, _patch * _positions);
            ToColumns(x.Slice(b * inSize, inSize), columns);
            var output = y.Slice(b * outSize, outSize);
            for (int f = 0; f < Filters; f++)
            {
                output.Slice(f * _positions, _positions).Fill(_bias[f]);
            }
            Gemm.Multiply(false, false, Filters, _positions, _patch, 1f, _weight, columns, 1f, output);
        }
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        int inSize = InputShape.Size;
        int outSize = OutputShape.Size;
        Array.Clear(_biasGradient);
        for (int b = 0; b < batch; b++)
        {
            var gradient = dy.Slice(b * outSize, outSize);
            var columns = _columns.AsSpan(b * _patch * _positions, _patch * _positions);
            // dW += dy_b col_b^T; db += row sums of dy_b; dcol = W^T dy_b, folded back onto the image.
            Gemm.Multiply(false, true, Filters, _patch, _positions, 1f, gradient, columns, b == 0 ? 0f : 1f, _weightGradient);
            for (int f = 0; f < Filters; f++)
            {
                _biasGradient[f] += TensorPrimitives.Sum(gradient.Slice(f * _positions, _positions));
            }
            if (!dx.IsEmpty)
            {
                Gemm.Multiply(true, false, _patch, _positions, Filters, 1f, _weight, gradient, 0f, _columnGradient);
                var image = dx.Slice(b * inSize, inSize);
                image.Clear();
                FromColumns(_columnGradient, image);
            }
        }
    }

    /// <summary>im2col for stride 1: row (c, ki, kj), column (oy, ox) holds x[c, oy + ki - pad, ox + kj - pad], or 0 outside.</summary>
    private void ToColumns(ReadOnlySpan<float> image, Span<float> columns)
    {
        int height = InputShape.Height, width = InputShape.Width;
        int outHeight = OutputShape.Height, outWidth = OutputShape.Width;
        int row = 0;
        for (int c = 0; c < InputShape.Channels; c++)
        {
            var plane = image.Slice(c * height * width, height * width);
            for (int ki = 0; ki < Kernel; ki++)
            {
                for (int kj = 0; kj < Kernel; kj++, row++)
                {
                    var target = columns.Slice(row * _positions, _positions);
                    // The output columns ox whose input column ox + kj - pad lies inside the image: one contiguous run.
                    int first = Math.Max(0, Padding - kj);
                    int last = Math.Min(outWidth, width + Padding - kj); // exclusive
                    for (int oy = 0; oy < outHeight; oy++)
                    {
                        var line = target.Slice(oy * outWidth, outWidth);
                        int iy = oy + ki - Padding;
                        if (iy < 0 || iy >= height || first >= last)
                        {
                            line.Clear();
                            continue;
                        }
                        line[..first].Clear();
                        plane.Slice((iy * width) + first + kj - Padding, last - first).CopyTo(line[first..last]);
                        line[last..].Clear();
                    }
                }
            }
        }
    }

    /// <summary>col2im: adds each column entry back onto the image position it was copied from.</summary>
    private void FromColumns(ReadOnlySpan<float> columns, Span<float> image)
    {
        int height = InputShape.Height, width = InputShape.Width;
        int outHeight = OutputShape.Height, outWidth = OutputShape.Width;
        int row = 0;
        for (int c = 0; c < InputShape.Channels; c++)
        {
            var plane = image.Slice(c * height * width, height * width);
            for (int ki = 0; ki < Kernel; ki++)
            {
                for (int kj = 0; kj < Kernel; kj++, row++)
                {
                    var source = columns.Slice(row * _positions, _positions);
                    int first = Math.Max(0, Padding - kj);
                    int last = Math.Min(outWidth, width + Padding - kj);
                    if (first >= last)
                    {
                        continue;
                    }
                    for (int oy = 0; oy < outHeight; oy++)
                    {
                        int iy = oy + ki - Padding;
                        if (iy < 0 || iy >= height)
                        {
                            continue;
                        }
                        var target = plane.Slice((iy * width) + first + kj - Padding, last - first);
                        TensorPrimitives.Add(target, source.Slice((oy * outWidth) + first, last - first), target);
                    }
                }
            }
        }
    }
}
