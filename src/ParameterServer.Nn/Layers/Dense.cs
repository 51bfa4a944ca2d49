using System.Numerics.Tensors;
using ParameterServer.Nn.Kernels;

namespace ParameterServer.Nn.Layers;

/// <summary>A fully connected layer: y = x W^T + b, W of shape [outputs, inputs]. Takes any input shape as a flat vector.</summary>
public sealed class Dense : Layer
{
    private float[] _weight = [];
    private float[] _bias = [];
    private float[] _weightGradient = [];
    private float[] _biasGradient = [];
    private ParameterTensor[] _tensors = [];

    public Dense(int outputs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outputs, 1);
        Outputs = outputs;
    }

    public int Outputs { get; }

    internal override string Kind => "dense";

    internal override IEnumerable<ParameterTensor> Tensors => _tensors;

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch)
    {
        int inputs = input.Size;
        _weight = new float[Outputs * inputs];
        _weightGradient = new float[_weight.Length];
        _bias = new float[Outputs];
        _biasGradient = new float[Outputs];
        _tensors =
        [
            new ParameterTensor(Name + ".weight", [Outputs, inputs], _weight, _weightGradient),
            new ParameterTensor(Name + ".bias", [Outputs], _bias, _biasGradient),
        ];
        return new FeatureShape(Outputs, 1, 1);
    }

    internal override void Initialize(Random random)
    {
        HeUniform(_weight, InputShape.Size, random);
        Array.Clear(_bias);
    }

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        int inputs = InputShape.Size;
        for (int b = 0; b < batch; b++)
        {
            _bias.CopyTo(y.Slice(b * Outputs, Outputs));
        }
        Gemm.Multiply(false, true, batch, Outputs, inputs, 1f, x[..(batch * inputs)], _weight, 1f, y[..(batch * Outputs)]);
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        int inputs = InputShape.Size;
        var gradients = dy[..(batch * Outputs)];
        // dW = dy^T x; db = the column sums of dy; dx = dy W.
        Gemm.Multiply(true, false, Outputs, inputs, batch, 1f, gradients, x[..(batch * inputs)], 0f, _weightGradient);
        gradients[..Outputs].CopyTo(_biasGradient);
        for (int b = 1; b < batch; b++)
        {
            TensorPrimitives.Add(_biasGradient, gradients.Slice(b * Outputs, Outputs), _biasGradient);
        }
        if (!dx.IsEmpty)
        {
            Gemm.Multiply(false, false, batch, inputs, Outputs, 1f, gradients, _weight, 0f, dx[..(batch * inputs)]);
        }
    }
}
