using System.Numerics.Tensors;
using ParameterServer.Nn;
using ParameterServer.Nn.Layers;

namespace ParameterServer.Tests.Nn;

/// <summary>
/// Backward passes against numerical gradients: each parameter's analytic gradient matches the central difference of
/// the loss. The first layer's gradients pass through every later layer's input gradient, so those are checked too.
/// </summary>
public class LayerGradientTests
{
    private const int Batch = 3;

    public static TheoryData<string> Models() => new() { "dense-tanh", "conv-tanh", "conv-pad-tanh", "conv-pad-relu-pool", "lenet5-small", "dense-relu-deep" };

    private static Sequential Build(string name) => name switch
    {
        "dense-tanh" => new Sequential(new FeatureShape(7, 1, 1), Batch, new Dense(5), new Tanh(), new Dense(4)),
        "conv-tanh" => new Sequential(new FeatureShape(2, 5, 6), Batch, new Conv2d(3, 3), new Tanh(), new Dense(4)),
        "conv-pad-tanh" => new Sequential(new FeatureShape(2, 5, 6), Batch, new Conv2d(3, 3, padding: 2), new Tanh(), new Conv2d(2, 3, padding: 1), new Tanh(), new Dense(4)),
        "conv-pad-relu-pool" => new Sequential(new FeatureShape(2, 6, 6), Batch, new Conv2d(3, 3, padding: 1), new Relu(), new MaxPool2d(2), new Dense(4)),
        "lenet5-small" => new Sequential(new FeatureShape(1, 12, 12), Batch,
            new Conv2d(2, 5, padding: 2), new Relu(), new MaxPool2d(2), new Conv2d(3, 3), new Tanh(), new MaxPool2d(2), new Dense(6), new Relu(), new Dense(4)),
        "dense-relu-deep" => new Sequential(new FeatureShape(6, 1, 1), Batch, new Dense(8), new Relu(), new Dense(8), new Relu(), new Dense(4)),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Every_parameter_gradient_matches_the_numerical_one(string name)
    {
        var model = Build(name);
        model.Initialize(seed: 3);
        var random = new Random(11);
        float[] input = new float[Batch * model.InputShape.Size];
        for (int i = 0; i < input.Length; i++)
        {
            input[i] = (random.NextSingle() * 2f) - 1f;
        }
        byte[] labels = [0, 3, 1];
        model.ComputeGradients(input, labels, Batch);
        var analytic = model.Parameters.Select(p => p.Gradient.ToArray()).ToList();

        int checkedCount = 0, kinks = 0;
        for (int t = 0; t < model.Parameters.Count; t++)
        {
            var tensor = model.Parameters[t];
            var values = tensor.Value.Span;
            // Every value of small tensors, a spread of the larger ones.
            int step = Math.Max(1, tensor.Count / 40);
            for (int i = 0; i < tensor.Count; i += step)
            {
                const float h = 2e-3f;
                float saved = values[i];
                values[i] = saved + h;
                double up = Loss(model, input, labels);
                values[i] = saved - h;
                double down = Loss(model, input, labels);
                values[i] = saved;
                double numeric = (up - down) / (2 * h);
                double error = Math.Abs(numeric - analytic[t][i]);
                double scale = Math.Max(1e-2, Math.Abs(numeric) + Math.Abs(analytic[t][i]));
                if (error / scale > 5e-2)
                {
                    // A ReLU or max-pool kink inside [x - h, x + h] makes the difference quotient meaningless; allow a few.
                    kinks++;
                    Assert.True(name.Contains("relu", StringComparison.Ordinal) || name.Contains("lenet", StringComparison.Ordinal) || name.Contains("pool", StringComparison.Ordinal),
                        $"{tensor.Name}[{i}]: analytic {analytic[t][i]}, numerical {numeric}");
                }
                checkedCount++;
            }
        }
        // Smooth models (tanh only) must match everywhere; with ReLU and max-pooling a perturbation of h flips a few units.
        Assert.True(kinks <= checkedCount / 20, $"{kinks} of {checkedCount} gradients differ from the numerical ones");
    }

    [Theory]
    [InlineData("dense")]
    [InlineData("moe")]
    public void Multi_label_gradients_match_the_numerical_ones(string head)
    {
        // A video-tagging shape: several labels per example, independent sigmoids (or a mixture of 2 experts per label,
        // whose input gradient reaches the first layer).
        var model = new Sequential(new FeatureShape(9, 1, 1), Batch, new Dense(7), new Tanh(), head == "moe" ? new MixtureOfExperts(5, 2) : new Dense(5));
        model.Initialize(seed: 4);
        var random = new Random(12);
        float[] input = Enumerable.Range(0, Batch * 9).Select(_ => (random.NextSingle() * 2f) - 1f).ToArray();
        float[] targets = Enumerable.Range(0, Batch * 5).Select(i => i % 3 == 0 ? 1f : 0f).ToArray();
        model.ComputeGradients(input, targets, Batch);
        var analytic = model.Parameters.Select(p => p.Gradient.ToArray()).ToList();
        double MeanLoss()
        {
            var logits = model.Forward(input, Batch);
            double sum = 0;
            for (int i = 0; i < logits.Length; i++)
            {
                double p = 1 / (1 + Math.Exp(-logits[i]));
                sum -= (targets[i] * Math.Log(p)) + ((1 - targets[i]) * Math.Log(1 - p));
            }
            return sum / Batch;
        }
        for (int t = 0; t < model.Parameters.Count; t++)
        {
            var values = model.Parameters[t].Value.Span;
            for (int i = 0; i < values.Length; i++)
            {
                const float h = 2e-3f;
                float saved = values[i];
                values[i] = saved + h;
                double up = MeanLoss();
                values[i] = saved - h;
                double down = MeanLoss();
                values[i] = saved;
                double numeric = (up - down) / (2 * h);
                Assert.True(Math.Abs(numeric - analytic[t][i]) <= 5e-2 * Math.Max(1e-2, Math.Abs(numeric) + Math.Abs(analytic[t][i])),
                    $"{model.Parameters[t].Name}[{i}]: analytic {analytic[t][i]}, numerical {numeric}");
            }
        }
        Assert.Contains("need 15 targets", Assert.Throws<ArgumentException>(() => model.ComputeGradients(input, new float[3], Batch)).Message);
    }

    [Fact]
    public void A_mixture_of_experts_with_gate_logits_past_exps_range_stays_finite()
    {
        // exp(100) overflows a float: unshifted, the softmax would be inf / inf.
        var model = new Sequential(new FeatureShape(3, 1, 1), 1, new MixtureOfExperts(2, 2));
        model.Initialize(seed: 1);
        model.Parameters.Single(p => p.Name.EndsWith("gates.bias", StringComparison.Ordinal)).Value.Span.Fill(100f);
        float[] input = [1f, -1f, 0.5f];
        Assert.All(model.Forward(input, 1).ToArray(), logit => Assert.True(float.IsFinite(logit), $"logit {logit}"));
        model.ComputeGradients(input, [1f, 0f], 1);
        Assert.All(model.Parameters, p => Assert.True(TensorPrimitives.IsFiniteAll(p.Gradient.Span), $"{p.Name}'s gradient"));
    }

    private static double Loss(Sequential model, float[] input, byte[] labels)
    {
        // In double, from the logits, so the difference quotient is not lost in float rounding.
        var logits = model.Forward(input, Batch);
        int classes = model.OutputShape.Size;
        double loss = 0;
        for (int b = 0; b < Batch; b++)
        {
            var scores = logits.Slice(b * classes, classes);
            double max = double.MinValue;
            foreach (float s in scores)
            {
                max = Math.Max(max, s);
            }
            double sum = 0;
            foreach (float s in scores)
            {
                sum += Math.Exp(s - max);
            }
            loss += Math.Log(sum) - (scores[labels[b]] - max);
        }
        return loss / Batch;
    }

    [Fact]
    public void Dropout_is_the_identity_outside_training_and_keeps_the_mean_in_training()
    {
        var model = new Sequential(new FeatureShape(1000, 1, 1), 1, new Dropout(0.5f));
        model.Initialize(1);
        float[] input = Enumerable.Repeat(1f, 1000).ToArray();
        Assert.Equal(input, model.Forward(input, 1).ToArray());
        var trained = model.Forward(input, 1, training: true).ToArray();
        Assert.InRange(trained.Count(v => v == 0f), 400, 600);
        Assert.All(trained, v => Assert.True(v is 0f or 2f));
    }

    [Fact]
    public void Shapes_flow_through_lenet5_and_name_each_tensor()
    {
        var model = ParameterServer.Nn.Models.LeNet5(new FeatureShape(1, 28, 28), 10, 8);
        Assert.Equal(new FeatureShape(10, 1, 1), model.OutputShape);
        Assert.Equal(61_706, model.ParameterCount);
        Assert.Equal(["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias"],
            model.Parameters.Select(p => p.Name));
        Assert.Equal([16, 6, 5, 5], model.Parameters[2].Shape);
    }

    [Fact]
    public void Bad_specs_labels_and_batches_are_refused_saying_why()
    {
        var input = new FeatureShape(1, 28, 28);
        Assert.Contains("lenet5, mlp", Assert.Throws<ArgumentException>(() => ParameterServer.Nn.Models.Create("resnet", input, 10, 4)).Message, StringComparison.Ordinal);
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => ParameterServer.Nn.Models.Create("mlp:10,x", input, 10, 4)).Message, StringComparison.Ordinal);
        var model = ParameterServer.Nn.Models.Create("mlp:16", input, 10, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(new float[5 * 784], 5));
        Assert.Contains("label 12", Assert.Throws<ArgumentException>(() => model.ComputeGradients(new float[784], [12], 1)).Message, StringComparison.Ordinal);
    }
}
