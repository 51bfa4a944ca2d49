using FsCheck.Fluent;
using FsCheck;
using ParameterServer.Extensions;

namespace ParameterServer.Tests;

public class UpdateHandlerTests
{
    public static readonly TheoryData<int> Widths = new(1, 3, 8, 17, 64);

    // ---- Reference values, computed independently in double -------------------------------

    [Fact]
    public void Sum_adds_pushed_values()
    {
        float[] row = [1, 2, 3];
        UpdateHandlers.Sum.Apply(row, [0.5f, -2, 10], 3);
        UpdateHandlers.Sum.Apply(row, [0.5f, 0, 0], 3);
        Assert.Equal([2f, 0f, 13f], row);
        Assert.Equal(0, UpdateHandlers.Sum.StateLength(5));
    }

    [Fact]
    public void Sgd_with_l2_matches_hand_computed_steps()
    {
        // lr = 0.1, l2 = 0.5, g = [1, -2] twice, w0 = 0:
        // step 1: w = 0 - 0.1 * (g + 0)          = [-0.1, 0.2]
        // step 2: w = w - 0.1 * (g + 0.5 * w)    = [-0.1 - 0.1 * 0.95, 0.2 - 0.1 * (-1.9)] = [-0.195, 0.39]
        IUpdateHandler sgd = UpdateHandlers.Sgd(0.1f, l2: 0.5f);
        Assert.Equal(0, sgd.StateLength(2));
        float[] row = new float[2];
        sgd.Apply(row, [1, -2], 2);
        AssertClose([-0.1, 0.2], row);
        sgd.Apply(row, [1, -2], 2);
        AssertClose([-0.195, 0.39], row);
    }

    [Fact]
    public void AdaGrad_matches_hand_computed_steps()
    {
        // lr = 0.1, eps = 1e-6; g = 2 then 1:
        // step 1: n = 4, w = -0.1 * 2 / (2 + 1e-6)
        // step 2: n = 5, w -= 0.1 * 1 / (sqrt(5) + 1e-6)
        IUpdateHandler adagrad = UpdateHandlers.AdaGrad(0.1f, 1e-6f);
        Assert.Equal(1, adagrad.StateLength(1));
        float[] row = new float[2];
        adagrad.Apply(row, [2], 1);
        double w1 = -0.1 * 2 / (2 + 1e-6);
        AssertClose([w1, 4], row);
        adagrad.Apply(row, [1], 1);
        AssertClose([w1 - (0.1 / (Math.Sqrt(5) + 1e-6)), 5], row);
        Assert.Equal(-0.144721, row[0], 5);
    }

    [Fact]
    public void Ftrl_keeps_weights_exactly_zero_inside_the_l1_ball()
    {
        // alpha = 0.1, beta = 1, l1 = 1, l2 = 0; gradients 0.5, 0.5, 2, -1 on one coordinate.
        IUpdateHandler ftrl = UpdateHandlers.Ftrl(alpha: 0.1f, beta: 1, l1: 1, l2: 0);
        Assert.Equal(2, ftrl.StateLength(1));
        float[] row = new float[3]; // [w | z | n]

        // step 1: sigma = (0.5 - 0) / 0.1 = 5, z = 0.5 - 5 * 0 = 0.5, n = 0.25 -> |z| <= 1, w = 0.
        ftrl.Apply(row, [0.5f], 1);
        Assert.Equal(0f, row[0]);
        AssertClose([0, 0.5, 0.25], row);

        // step 2: z = 1.0, n = 0.5 -> |z| <= 1 still, w = 0 exactly.
        ftrl.Apply(row, [0.5f], 1);
        Assert.Equal(0f, row[0]);
        AssertClose([0, 1.0, 0.5], row);

        // step 3: n = 4.5, sigma uses w = 0, z = 3 -> w = -(3 - 1) / ((1 + sqrt(4.5)) / 0.1).
        ftrl.Apply(row, [2f], 1);
        double w3 = -2 / ((1 + Math.Sqrt(4.5)) / 0.1);
        AssertClose([w3, 3, 4.5], row);
        Assert.Equal(-0.0640754, row[0], 6);

        // step 4: sigma = (sqrt(5.5) - sqrt(4.5)) / 0.1, z = 3 - 1 - sigma * w3.
        ftrl.Apply(row, [-1f], 1);
        double sigma = (Math.Sqrt(5.5) - Math.Sqrt(4.5)) / 0.1;
        double z4 = 3 - 1 - (sigma * w3);
        double w4 = -(z4 - 1) / ((1 + Math.Sqrt(5.5)) / 0.1);
        AssertClose([w4, z4, 5.5], row);
    }

    [Fact]
    public void Ftrl_with_l2_and_negative_gradients_matches_reference()
    {
        IUpdateHandler ftrl = UpdateHandlers.Ftrl(alpha: 0.5f, beta: 0.25f, l1: 0.1f, l2: 2f);
        float[] row = new float[6]; // width 2
        double[] reference = new double[6];
        float[][] pushes = [[-1, 0.05f], [-0.5f, 0.02f], [0.3f, -3]];
        for (int step = 0; step < pushes.Length; step++)
        {
            ftrl.Apply(row, pushes[step], 2);
            ReferenceFtrl(reference, pushes[step], 0.5, 0.25, 0.1, 2);
            AssertClose(reference, row);
            Assert.True(row[0] > 0); // z < -l1 -> positive weight
            if (step < 2)
            {
                Assert.Equal(0f, row[1]); // small gradients keep |z| <= l1: exactly zero
            }
        }

        Assert.True(row[1] > 0); // the large negative gradient pushed z past -l1
    }

    [Fact]
    public void Adam_bias_correction_at_steps_one_and_two()
    {
        // With bias correction, step 1 gives m_hat = g and v_hat = g^2, so w = -lr * g / (|g| + eps).
        const float Lr = 0.01f;
        IUpdateHandler adam = UpdateHandlers.Adam(Lr);
        Assert.Equal(5, adam.StateLength(2));
        float[] row = new float[7]; // [w0 w1 | m0 m1 | v0 v1 | t]
        adam.Apply(row, [0.5f, -2], 2);
        AssertClose([-Lr * 0.5 / (0.5 + 1e-8), Lr * 2 / (2 + 1e-8)], row.AsSpan(0, 2).ToArray());
        AssertClose([0.05, -0.2, 0.001 * 0.25, 0.001 * 4, 1], row.AsSpan(2).ToArray(), relative: 1e-4);

        // Step 2 with g = [1, -2]: m = 0.9 m + 0.1 g, v = 0.999 v + 0.001 g^2,
        // m_hat = m / (1 - 0.9^2), v_hat = v / (1 - 0.999^2).
        adam.Apply(row, [1f, -2], 2);
        double m0 = (0.9 * 0.05) + 0.1, v0 = (0.999 * 0.00025) + 0.001;
        double step0 = Lr * (m0 / 0.19) / (Math.Sqrt(v0 / (1 - (0.999 * 0.999))) + 1e-8);
        double w0 = (-Lr * 0.5 / (0.5 + 1e-8)) - step0;
        // Constant gradient on coordinate 1: the bias-corrected step is exactly lr * sign again.
        double w1 = 2 * Lr * 2 / (2 + 1e-8);
        AssertClose([w0, w1], row.AsSpan(0, 2).ToArray(), relative: 1e-4);
        Assert.Equal(2f, row[6]);
    }

    [Fact]
    public void ProximalNewton_takes_the_closed_form_step_and_keeps_the_gradient()
    {
        // argmin_v g (v - w) + u/2 (v - w)^2 + l1 |v| + l2/2 v^2 = soft(u w - g, l1) / (u + l2).
        IUpdateHandler prox = UpdateHandlers.ProximalNewton(l1: 1, l2: 0.5f);
        Assert.Equal(0, prox.StateLength(2));
        float[] row = [2, 0];
        prox.Apply(row, [3, 4], 2); // z = 4 * 2 - 3 = 5 -> (5 - 1) / 4.5
        AssertClose([4 / 4.5, 3], row);
        row = [0.1f, 0];
        prox.Apply(row, [0.2f, 2], 2); // z = 0.2 - 0.2 = 0, inside the L1 ball: exactly zero
        Assert.Equal([0f, 0.2f], row);
        row = [0, 0];
        prox.Apply(row, [5, 1], 2); // z = -5 -> (-5 + 1) / 1.5
        AssertClose([-4 / 1.5, 5], row);
        // No curvature and no L2: the weight stays where it is rather than dividing by zero.
        IUpdateHandler plain = UpdateHandlers.ProximalNewton();
        row = [0.7f, 0];
        plain.Apply(row, [0, 0], 2);
        Assert.Equal([0.7f, 0f], row);
        // [v, -1] sets the weight and keeps the last gradient.
        row = [0.7f, 0.25f];
        prox.Apply(row, [-2.5f, -1], 2);
        Assert.Equal([-2.5f, 0.25f], row);
        var wrongWidth = Assert.Throws<ArgumentException>(() => prox.StateLength(1));
        Assert.Contains("width 2", wrongWidth.Message, StringComparison.Ordinal);
    }

    // ---- Vectorised paths vs. a scalar float reference --------------------------------------

    [Theory]
    [MemberData(nameof(Widths))]
    public void Vectorised_handlers_match_scalar_reference(int width)
    {
        var random = new Random(width);
        (IUpdateHandler Handler, Action<float[], float[]> Reference)[] cases =
        [
            (UpdateHandlers.Sum, (row, g) => ScalarSum(row, g)),
            (UpdateHandlers.Sgd(0.05f, 0.01f), (row, g) => ScalarSgd(row, g, 0.05f, 0.01f)),
            (UpdateHandlers.AdaGrad(0.2f, 1e-4f), (row, g) => ScalarAdaGrad(row, g, 0.2f, 1e-4f)),
            (UpdateHandlers.Momentum(0.05f, 0.9f), (row, g) => ScalarMomentum(row, g, 0.05f, 0.9f)),
            (UpdateHandlers.Ftrl(0.3f, 1f, 0.05f, 0.5f), (row, g) => ScalarFtrl(row, g, 0.3f, 1f, 0.05f, 0.5f)),
            (UpdateHandlers.Adam(0.01f, 0.8f, 0.99f, 1e-6f), (row, g) => ScalarAdam(row, g, 0.01f, 0.8f, 0.99f, 1e-6f)),
        ];

        foreach ((IUpdateHandler handler, Action<float[], float[]> reference) in cases)
        {
            int length = width + handler.StateLength(width);
            float[] actual = new float[length];
            float[] expected = new float[length];
            for (int step = 0; step < 5; step++)
            {
                float[] g = RandomRow(random, width);
                handler.Apply(actual, g, width);
                reference(expected, g);
                AssertClose(expected, actual, relative: 1e-5, because: $"{handler} width {width} step {step}");
            }
        }
    }

    [Fact]
    public void A_value_gets_the_same_bits_in_the_vector_body_and_in_the_scalar_tail()
    {
        // Width 17: lanes 0..15 (or 0..7, 8..15) run vectorised, lane 16 in the scalar tail. Same inputs, same bits.
        const int width = 17;
        var random = new Random(17);
        foreach (var handler in new[] { UpdateHandlers.Sum, UpdateHandlers.Sgd(0.05f, 0.01f), UpdateHandlers.AdaGrad(0.2f, 1e-4f), UpdateHandlers.Momentum(0.05f, 0.9f), UpdateHandlers.Ftrl(0.3f, 1f, 0.05f, 0.5f), UpdateHandlers.Adam(0.01f) })
        {
            float[] row = new float[width + handler.StateLength(width)];
            for (int step = 0; step < 20; step++)
            {
                float g = (float)(random.NextDouble() - 0.5) * (step % 3 == 0 ? 0.01f : 2f); // some steps stay inside FTRL's L1 ball
                handler.Apply(row, Enumerable.Repeat(g, width).ToArray(), width);
                for (int i = 1; i < width; i++)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(row[0]) == BitConverter.SingleToInt32Bits(row[i]), $"{handler} step {step}: lane {i} = {row[i]}, lane 0 = {row[0]}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void ApplyRun_equals_Apply_per_row(int width)
    {
        var random = new Random(100 + width);
        foreach (IRunUpdateHandler handler in new[] { (IRunUpdateHandler)UpdateHandlers.Sum, (IRunUpdateHandler)UpdateHandlers.Sgd(0.1f, 0.3f) })
        {
            foreach (int count in new[] { 0, 1, 2, 7 })
            {
                int stride = width + handler.StateLength(width);
                float[] runRows = RandomRow(random, stride * count);
                float[] perRow = (float[])runRows.Clone();
                float[] pushed = RandomRow(random, width * count);

                handler.ApplyRun(runRows, pushed, width, count);
                for (int r = 0; r < count; r++)
                {
                    handler.Apply(perRow.AsSpan(r * stride, stride), pushed.AsSpan(r * width, width), width);
                }

                Assert.Equal(perRow, runRows);
            }
        }
    }

    [Fact]
    public void Apply_and_ApplyRun_reject_mismatched_lengths()
    {
        IUpdateHandler adam = UpdateHandlers.Adam(0.1f);
        Assert.Throws<ArgumentException>(() => adam.Apply(new float[7], new float[3], 2));
        Assert.Throws<ArgumentException>(() => adam.Apply(new float[6], new float[2], 2));
        Assert.Throws<ArgumentException>(() => UpdateHandlers.Sum.Apply(new float[3], new float[2], 2));
        var sum = (IRunUpdateHandler)UpdateHandlers.Sum;
        Assert.Throws<ArgumentException>(() => sum.ApplyRun(new float[6], new float[4], 2, 3));
        Assert.Throws<ArgumentException>(() => sum.ApplyRun(new float[4], new float[6], 2, 3));
    }

    // ---- Parse / ToString --------------------------------------------------------------------

    [Theory]
    [InlineData("sum", "sum")]
    [InlineData("sgd", "sgd:lr=0.1,l2=0")]
    [InlineData("adagrad", "adagrad:lr=0.1,eps=1E-06")]
    [InlineData("ftrl", "ftrl:alpha=0.1,beta=1,l1=0,l2=0")]
    [InlineData("adam", "adam:lr=0.001,beta1=0.9,beta2=0.999,eps=1E-08")]
    [InlineData("ftrl:l1=1", "ftrl:alpha=0.1,beta=1,l1=1,l2=0")]
    [InlineData("prox", "prox:l1=0,l2=0")]
    [InlineData("prox:l2=1", "prox:l1=0,l2=1")]
    [InlineData(" SGD : LR = 0.5 , l2=1e-3 ", "sgd:lr=0.5,l2=0.001")]
    [InlineData("adam:eps=1e-7,beta1=0", "adam:lr=0.001,beta1=0,beta2=0.999,eps=1E-07")]
    public void Parse_applies_defaults_and_ToString_is_canonical(string spec, string canonical)
    {
        IUpdateHandler handler = UpdateHandlers.Parse(spec);
        Assert.Equal(canonical, handler.ToString());
        Assert.Equal(canonical, UpdateHandlers.Parse(canonical).ToString());
    }

    [Fact]
    public void Factories_produce_the_same_handlers_as_Parse()
    {
        Assert.Same(UpdateHandlers.Sum, UpdateHandlers.Parse("sum"));
        Assert.Equal("sgd:lr=0.25,l2=0.5", UpdateHandlers.Sgd(0.25f, 0.5f).ToString());
        Assert.Equal("adagrad:lr=0.3,eps=1E-06", UpdateHandlers.AdaGrad(0.3f).ToString());
        Assert.Equal("ftrl:alpha=0.1,beta=1,l1=1,l2=0", UpdateHandlers.Ftrl(0.1f, l1: 1).ToString());
        Assert.Equal("adam:lr=0.001,beta1=0.9,beta2=0.999,eps=1E-08", UpdateHandlers.Adam(0.001f).ToString());
    }

    [Fact]
    public void ToString_round_trips_through_Parse_for_arbitrary_parameters()
    {
        Gen<float> positive = Gen.Choose(1, int.MaxValue).Select(i => i / 1e7f);
        Gen<float> nonNegative = Gen.Frequency((1, Gen.Constant(0f)), (4, positive));
        Gen<float> unit = Gen.Choose(0, 999_999).Select(i => i / 1e6f);
        Gen<IUpdateHandler> handlers = Gen.OneOf(
            Gen.Constant(UpdateHandlers.Sum),
            from lr in positive from l2 in nonNegative select UpdateHandlers.Sgd(lr, l2),
            from lr in positive from eps in positive select UpdateHandlers.AdaGrad(lr, eps),
            from a in positive from b in nonNegative from l1 in nonNegative from l2 in nonNegative select UpdateHandlers.Ftrl(a, b, l1, l2),
            from l1 in nonNegative from l2 in nonNegative select UpdateHandlers.ProximalNewton(l1, l2),
            from lr in positive from b1 in unit from b2 in unit from eps in positive select UpdateHandlers.Adam(lr, b1, b2, eps));

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(500),
            Prop.ForAll(handlers.ToArbitrary(), h =>
            {
                string spec = h.ToString()!;
                IUpdateHandler parsed = UpdateHandlers.Parse(spec);
                return parsed.GetType() == h.GetType() && parsed.ToString() == spec;
            }));
    }

    [Theory]
    [InlineData("ftrll", "unknown update handler 'ftrll': expected one of sum, sgd, adagrad, momentum, ftrl, prox, adam")]
    [InlineData("", "has no name: expected one of sum, sgd, adagrad, momentum, ftrl, prox, adam")]
    [InlineData(":lr=1", "has no name")]
    [InlineData("sgd:rate=0.1", "unknown parameter 'rate' for update handler 'sgd': expected one of lr, l2")]
    [InlineData("adam:lr=abc", "invalid value 'abc' for parameter 'lr' of update handler 'adam': expected a finite number")]
    [InlineData("sgd:lr=0", "invalid value '0' for parameter 'lr' of update handler 'sgd': must be > 0")]
    [InlineData("sgd:lr=-0.1", "invalid value '-0.1' for parameter 'lr' of update handler 'sgd': must be > 0")]
    [InlineData("sgd:lr=NaN", "expected a finite number")]
    [InlineData("sgd:lr=1e40", "expected a finite number")]
    [InlineData("adam:beta1=1", "invalid value '1' for parameter 'beta1' of update handler 'adam': must be in [0, 1)")]
    [InlineData("adam:beta2=-0.5", "parameter 'beta2' of update handler 'adam': must be in [0, 1)")]
    [InlineData("ftrl:l1=-1", "parameter 'l1' of update handler 'ftrl': must be >= 0")]
    [InlineData("adagrad:eps=0", "parameter 'eps' of update handler 'adagrad': must be > 0")]
    [InlineData("sum:lr=1", "update handler 'sum' takes no parameters")]
    [InlineData("sgd:lr", "malformed parameter 'lr' in update handler spec 'sgd:lr': expected key=value with key one of lr, l2")]
    [InlineData("sgd:", "malformed parameter ''")]
    [InlineData("sgd:lr=0.1,lr=0.2", "parameter 'lr' given more than once for update handler 'sgd'")]
    [InlineData("sgd:lr=0,5", "must be > 0")] // decimal comma is not a decimal separator
    public void Parse_rejects_bad_specs_with_helpful_messages(string spec, string expectedMessagePart)
    {
        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => UpdateHandlers.Parse(spec));
        Assert.IsNotType<ArgumentOutOfRangeException>(ex);
        Assert.Contains(expectedMessagePart, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_rejects_null()
    {
        Assert.Throws<ArgumentNullException>(() => UpdateHandlers.Parse(null!));
    }

    [Fact]
    public void Factories_validate_arguments()
    {
        AssertOutOfRange("learningRate", () => UpdateHandlers.Sgd(-0.1f));
        AssertOutOfRange("learningRate", () => UpdateHandlers.Sgd(0));
        AssertOutOfRange("l2", () => UpdateHandlers.Sgd(0.1f, -1));
        AssertOutOfRange("learningRate", () => UpdateHandlers.AdaGrad(float.NaN));
        AssertOutOfRange("epsilon", () => UpdateHandlers.AdaGrad(0.1f, 0));
        AssertOutOfRange("alpha", () => UpdateHandlers.Ftrl(float.PositiveInfinity));
        AssertOutOfRange("beta", () => UpdateHandlers.Ftrl(0.1f, beta: -1));
        AssertOutOfRange("l1", () => UpdateHandlers.Ftrl(0.1f, l1: -1));
        AssertOutOfRange("l2", () => UpdateHandlers.Ftrl(0.1f, l2: -1));
        AssertOutOfRange("beta1", () => UpdateHandlers.Adam(0.1f, beta1: 1));
        AssertOutOfRange("beta2", () => UpdateHandlers.Adam(0.1f, beta2: 1.5f));
        AssertOutOfRange("epsilon", () => UpdateHandlers.Adam(0.1f, epsilon: -1e-8f));
    }

    // ---- Helpers -----------------------------------------------------------------------------

    private static void AssertOutOfRange(string paramName, Func<IUpdateHandler> create)
    {
        ArgumentOutOfRangeException ex = Assert.Throws<ArgumentOutOfRangeException>(create);
        Assert.Equal(paramName, ex.ParamName);
        Assert.Contains($"{paramName} must be a finite number", ex.Message, StringComparison.Ordinal);
    }

    private static float[] RandomRow(Random random, int length)
    {
        float[] row = new float[length];
        for (int i = 0; i < length; i++)
        {
            row[i] = (float)((random.NextDouble() * 4) - 2);
        }

        return row;
    }

    private static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<float> actual, double relative = 1e-5, string because = "")
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            double tolerance = relative * Math.Max(1, Math.Abs(expected[i]));
            Assert.True(
                Math.Abs(expected[i] - actual[i]) <= tolerance,
                $"{because} [{i}]: expected {expected[i]}, got {actual[i]}");
        }
    }

    private static void AssertClose(float[] expected, float[] actual, double relative, string because) =>
        AssertClose(expected.Select(x => (double)x).ToArray(), actual, relative, because);

    // Scalar float references, written straight from the update formulas.

    private static void ScalarSum(float[] row, float[] g)
    {
        for (int i = 0; i < g.Length; i++)
        {
            row[i] += g[i];
        }
    }

    private static void ScalarSgd(float[] row, float[] g, float lr, float l2)
    {
        for (int i = 0; i < g.Length; i++)
        {
            row[i] -= lr * (g[i] + (l2 * row[i]));
        }
    }

    private static void ScalarAdaGrad(float[] row, float[] g, float lr, float eps)
    {
        int width = g.Length;
        for (int i = 0; i < width; i++)
        {
            row[width + i] += g[i] * g[i];
            row[i] -= lr * g[i] / (MathF.Sqrt(row[width + i]) + eps);
        }
    }

    private static void ScalarMomentum(float[] row, float[] g, float lr, float mu)
    {
        int width = g.Length;
        for (int i = 0; i < width; i++)
        {
            row[width + i] = (mu * row[width + i]) + g[i];
            row[i] -= lr * row[width + i];
        }
    }

    private static void ScalarFtrl(float[] row, float[] g, float alpha, float beta, float l1, float l2)
    {
        int width = g.Length;
        for (int i = 0; i < width; i++)
        {
            ref float w = ref row[i];
            ref float z = ref row[width + i];
            ref float n = ref row[(2 * width) + i];
            float sigma = (MathF.Sqrt(n + (g[i] * g[i])) - MathF.Sqrt(n)) / alpha;
            z += g[i] - (sigma * w);
            n += g[i] * g[i];
            w = MathF.Abs(z) <= l1 ? 0 : -(z - (MathF.Sign(z) * l1)) / (((beta + MathF.Sqrt(n)) / alpha) + l2);
        }
    }

    private static void ScalarAdam(float[] row, float[] g, float lr, float beta1, float beta2, float eps)
    {
        int width = g.Length;
        float t = ++row[3 * width];
        for (int i = 0; i < width; i++)
        {
            ref float w = ref row[i];
            ref float m = ref row[width + i];
            ref float v = ref row[(2 * width) + i];
            m = (beta1 * m) + ((1 - beta1) * g[i]);
            v = (beta2 * v) + ((1 - beta2) * g[i] * g[i]);
            double mHat = m / (1 - Math.Pow(beta1, t));
            double vHat = v / (1 - Math.Pow(beta2, t));
            w -= (float)(lr * mHat / (Math.Sqrt(vHat) + eps));
        }
    }

    private static void ReferenceFtrl(double[] state, float[] g, double alpha, double beta, double l1, double l2)
    {
        int width = g.Length;
        for (int i = 0; i < width; i++)
        {
            double w = state[i], z = state[width + i], n = state[(2 * width) + i];
            double sigma = (Math.Sqrt(n + (g[i] * g[i])) - Math.Sqrt(n)) / alpha;
            z += g[i] - (sigma * w);
            n += g[i] * g[i];
            w = Math.Abs(z) <= l1 ? 0 : -(z - (Math.Sign(z) * l1)) / (((beta + Math.Sqrt(n)) / alpha) + l2);
            (state[i], state[width + i], state[(2 * width) + i]) = (w, z, n);
        }
    }
}
