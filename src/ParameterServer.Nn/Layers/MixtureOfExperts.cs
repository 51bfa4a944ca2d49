using System.Numerics.Tensors;

namespace ParameterServer.Nn.Layers;

/// <summary>
/// The YouTube-8M starter code's mixture of experts, one per output label c: p_c = sum_j gate_cj sigmoid(expert_cj . x),
/// where gate_c is a softmax over the E experts and a dummy expert that always says 0. It outputs logit(p_c), so that
/// <see cref="SigmoidCrossEntropy"/> trains it with the cross-entropy of p_c (d loss/d p = d loss/d logit / (p (1 - p))).
/// </summary>
public sealed class MixtureOfExperts : Layer
{
    private const float Epsilon = 1e-6f; // p is kept in [eps, 1 - eps] so that its logit is finite

    private readonly Dense _gates;
    private readonly Dense _experts;
    private float[] _gate = [];     // per example: Outputs x (Experts + 1) softmax weights
    private float[] _expert = [];   // per example: Outputs x Experts sigmoid outputs
    private float[] _gateGradient = [];
    private float[] _expertGradient = [];
    private float[] _inputGradient = [];

    public MixtureOfExperts(int outputs, int experts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outputs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(experts, 1);
        Outputs = outputs;
        Experts = experts;
        _gates = new Dense(outputs * (experts + 1));
        _experts = new Dense(outputs * experts);
    }

    public int Outputs { get; }

    public int Experts { get; }

    internal override string Kind => "moe";

    internal override IEnumerable<ParameterTensor> Tensors => _gates.Tensors.Concat(_experts.Tensors);

    private protected override FeatureShape Bind(FeatureShape input, int maxBatch)
    {
        _gates.Build(Name + ".gates", input, maxBatch);
        _experts.Build(Name + ".experts", input, maxBatch);
        _gate = new float[maxBatch * _gates.Outputs];
        _expert = new float[maxBatch * _experts.Outputs];
        _gateGradient = new float[_gate.Length];
        _expertGradient = new float[_expert.Length];
        _inputGradient = new float[maxBatch * input.Size];
        return new FeatureShape(Outputs, 1, 1);
    }

    internal override void Initialize(Random random)
    {
        _gates.Initialize(random);
        _experts.Initialize(random);
    }

    internal override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        _gates.Forward(x, _gate, batch, training);
        _experts.Forward(x, _expert, batch, training);
        int e = Experts, g = e + 1;
        TensorPrimitives.Sigmoid(_expert.AsSpan(0, batch * Outputs * e), _expert.AsSpan(0, batch * Outputs * e));
        for (int i = 0; i < batch * Outputs; i++)
        {
            var gate = _gate.AsSpan(i * g, g);
            // Shifted by the largest logit, so that large gate logits do not overflow exp into NaN.
            TensorPrimitives.Subtract(gate, TensorPrimitives.Max(gate), gate);
            TensorPrimitives.SoftMax(gate, gate);
            float p = TensorPrimitives.Dot(gate[..e], _expert.AsSpan(i * e, e));
            p = Math.Clamp(p, Epsilon, 1 - Epsilon);
            y[i] = MathF.Log(p / (1 - p));
        }
    }

    internal override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        int e = Experts, g = e + 1;
        for (int i = 0; i < batch * Outputs; i++)
        {
            float p = 1 / (1 + MathF.Exp(-y[i]));
            float dp = dy[i] / (p * (1 - p));
            var gate = _gate.AsSpan(i * g, g);
            var expert = _expert.AsSpan(i * e, e);
            var dGate = _gateGradient.AsSpan(i * g, g);
            var dExpert = _expertGradient.AsSpan(i * e, e);
            for (int j = 0; j < e; j++)
            {
                // d p / d gate logit_j = g_j (s_j - p); d p / d expert logit_j = g_j s_j (1 - s_j).
                dGate[j] = dp * gate[j] * (expert[j] - p);
                dExpert[j] = dp * gate[j] * expert[j] * (1 - expert[j]);
            }
            dGate[e] = -dp * gate[e] * p; // the dummy expert always says 0
        }
        _gates.Backward(x, _gate, _gateGradient, dx, batch);
        if (dx.IsEmpty)
        {
            _experts.Backward(x, _expert, _expertGradient, default, batch);
            return;
        }
        var fromExperts = _inputGradient.AsSpan(0, batch * InputShape.Size);
        _experts.Backward(x, _expert, _expertGradient, fromExperts, batch);
        TensorPrimitives.Add(dx[..fromExperts.Length], fromExperts, dx[..fromExperts.Length]);
    }
}
