using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

namespace ParameterServer.Extensions;

// The built-in handlers. Each ToString() returns its canonical spec, which UpdateHandlers.Parse
// accepts, so a handler's configuration can travel as a string (CLI flags, table metadata).
// Vectorised loops must do exactly the scalar tail's operations in the same order, so a value's
// result does not depend on whether it landed in the vector body or the tail.

/// <summary>values += pushed.</summary>
internal sealed class SumHandler : IRunUpdateHandler, IElementwiseUpdateHandler
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return 0;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, 0);
        Simd.Add(row, pushed);
    }

    public void ApplyRun(Span<float> rows, ReadOnlySpan<float> pushed, int width, int count)
    {
        // No state, so stored rows are as contiguous as pushed ones: one add over the run.
        HandlerChecks.Run(rows, pushed, width, count, 0);
        Simd.Add(rows, pushed);
    }

    public void ApplyElements(Span<float> values, ReadOnlySpan<float> pushed) => Simd.Add(values, pushed);

    public override string ToString() => "sum";
}

/// <summary>
/// A handler of int32 (<typeparamref name="T"/> int) or int64 (long) tables: the stores keep rows as 4-byte words
/// whatever they hold, and these handlers read them as the table's integers. Stateless, so a run is one span.
/// </summary>
internal abstract class IntegerHandler<T> : IRunUpdateHandler, IElementwiseUpdateHandler
    where T : unmanaged, IBinaryInteger<T>
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return 0;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, 0);
        ApplyElements(row, pushed);
    }

    public void ApplyRun(Span<float> rows, ReadOnlySpan<float> pushed, int width, int count)
    {
        HandlerChecks.Run(rows, pushed, width, count, 0);
        ApplyElements(rows, pushed);
    }

    public void ApplyElements(Span<float> values, ReadOnlySpan<float> pushed) =>
        Apply(MemoryMarshal.Cast<float, T>(values), MemoryMarshal.Cast<float, T>(pushed));

    protected abstract void Apply(Span<T> values, ReadOnlySpan<T> pushed);
}

/// <summary>values += pushed. Wrapping on overflow, like any integer sum; an int32 count that nears 2^31 wants an int64 table.</summary>
internal sealed class IntegerSumHandler<T> : IntegerHandler<T>
    where T : unmanaged, IBinaryInteger<T>
{
    protected override void Apply(Span<T> values, ReadOnlySpan<T> pushed) => System.Numerics.Tensors.TensorPrimitives.Add(values, pushed, values);

    public override string ToString() => "sum";
}

/// <summary>values = max(values, pushed): pushing the same value twice changes nothing.</summary>
internal sealed class IntegerMaxHandler<T> : IntegerHandler<T>
    where T : unmanaged, IBinaryInteger<T>
{
    protected override void Apply(Span<T> values, ReadOnlySpan<T> pushed) => System.Numerics.Tensors.TensorPrimitives.Max(values, pushed, values);

    public override string ToString() => "max";
}

/// <summary>w -= lr * (g + l2 * w).</summary>
internal sealed class SgdHandler(float learningRate, float l2) : IRunUpdateHandler, IElementwiseUpdateHandler
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return 0;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, 0);
        Update(row, pushed);
    }

    public void ApplyRun(Span<float> rows, ReadOnlySpan<float> pushed, int width, int count)
    {
        HandlerChecks.Run(rows, pushed, width, count, 0);
        Update(rows, pushed);
    }

    public void ApplyElements(Span<float> values, ReadOnlySpan<float> pushed)
    {
        if (values.Length != pushed.Length)
        {
            throw new ArgumentException($"pushed slice has {pushed.Length} floats, the stored slice {values.Length}.", nameof(pushed));
        }
        Update(values, pushed);
    }

    private void Update(Span<float> w, ReadOnlySpan<float> g)
    {
        int vectorEnd = Simd.VectorizedLength(w.Length);
        Span<Vector<float>> wv = Simd.AsVectors(w, vectorEnd);
        ReadOnlySpan<Vector<float>> gv = Simd.AsVectors(g, vectorEnd);
        for (int k = 0; k < wv.Length; k++)
        {
            wv[k] -= learningRate * (gv[k] + (l2 * wv[k]));
        }

        for (int i = vectorEnd; i < w.Length; i++)
        {
            w[i] -= learningRate * (g[i] + (l2 * w[i]));
        }
    }

    public override string ToString() => $"sgd:lr={Spec.F(learningRate)},l2={Spec.F(l2)}";
}

/// <summary>n += g^2; w -= lr * g / (sqrt(n) + eps). State: n per value.</summary>
internal sealed class AdaGradHandler(float learningRate, float epsilon) : IUpdateHandler
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return width;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, width);
        Span<float> w = row[..width];
        Span<float> n = row[width..];

        int vectorEnd = Simd.VectorizedLength(width);
        Span<Vector<float>> wv = Simd.AsVectors(w, vectorEnd);
        Span<Vector<float>> nv = Simd.AsVectors(n, vectorEnd);
        ReadOnlySpan<Vector<float>> gv = Simd.AsVectors(pushed, vectorEnd);
        var eps = new Vector<float>(epsilon);
        for (int k = 0; k < wv.Length; k++)
        {
            Vector<float> g = gv[k];
            Vector<float> nk = nv[k] + (g * g);
            nv[k] = nk;
            wv[k] -= learningRate * g / (Vector.SquareRoot(nk) + eps);
        }

        for (int i = vectorEnd; i < width; i++)
        {
            float g = pushed[i];
            float ni = n[i] + (g * g);
            n[i] = ni;
            w[i] -= learningRate * g / (MathF.Sqrt(ni) + epsilon);
        }
    }

    public override string ToString() => $"adagrad:lr={Spec.F(learningRate)},eps={Spec.F(epsilon)}";
}

/// <summary>v = mu * v + g; w -= lr * v. State: v per value.</summary>
internal sealed class MomentumHandler(float learningRate, float momentum) : IUpdateHandler
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return width;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, width);
        Span<float> w = row[..width];
        Span<float> v = row[width..];

        int vectorEnd = Simd.VectorizedLength(width);
        Span<Vector<float>> wv = Simd.AsVectors(w, vectorEnd);
        Span<Vector<float>> vv = Simd.AsVectors(v, vectorEnd);
        ReadOnlySpan<Vector<float>> gv = Simd.AsVectors(pushed, vectorEnd);
        for (int k = 0; k < wv.Length; k++)
        {
            Vector<float> vk = (momentum * vv[k]) + gv[k];
            vv[k] = vk;
            wv[k] -= learningRate * vk;
        }

        for (int i = vectorEnd; i < width; i++)
        {
            float vi = (momentum * v[i]) + pushed[i];
            v[i] = vi;
            w[i] -= learningRate * vi;
        }
    }

    public override string ToString() => $"momentum:lr={Spec.F(learningRate)},mu={Spec.F(momentum)}";
}

/// <summary>
/// FTRL-proximal (McMahan et al. 2013, Algorithm 1) with per-coordinate state z and n. The stored
/// value w is recomputed from z and n after every apply, so a pull reads the current weights.
/// </summary>
internal sealed class FtrlHandler(float alpha, float beta, float l1, float l2) : IUpdateHandler
{
    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return 2 * width;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, 2 * width);
        Span<float> w = row[..width];
        Span<float> z = row.Slice(width, width);
        Span<float> n = row.Slice(2 * width, width);

        // The L1 test becomes a lane mask and CopySign a sign-bit select; same operations, same order as the tail.
        int vectorEnd = Simd.VectorizedLength(width);
        Span<Vector<float>> wv = Simd.AsVectors(w, vectorEnd);
        Span<Vector<float>> zv = Simd.AsVectors(z, vectorEnd);
        Span<Vector<float>> nv = Simd.AsVectors(n, vectorEnd);
        ReadOnlySpan<Vector<float>> gv = Simd.AsVectors(pushed, vectorEnd);
        var alphaV = new Vector<float>(alpha);
        var betaV = new Vector<float>(beta);
        var l1V = new Vector<float>(l1);
        var l2V = new Vector<float>(l2);
        var signBit = Vector.AsVectorSingle(new Vector<int>(int.MinValue));
        for (int k = 0; k < wv.Length; k++)
        {
            Vector<float> g = gv[k];
            Vector<float> nOld = nv[k];
            Vector<float> nNew = nOld + (g * g);
            Vector<float> sqrtNew = Vector.SquareRoot(nNew);
            Vector<float> sigma = (sqrtNew - Vector.SquareRoot(nOld)) / alphaV;
            Vector<float> zk = zv[k] + (g - (sigma * wv[k]));
            zv[k] = zk;
            nv[k] = nNew;
            Vector<float> signedL1 = Vector.ConditionalSelect(signBit, zk, l1V); // MathF.CopySign(l1, z), l1 >= 0
            Vector<float> outside = -(zk - signedL1) / (((betaV + sqrtNew) / alphaV) + l2V);
            wv[k] = Vector.ConditionalSelect(Vector.LessThanOrEqual(Vector.Abs(zk), l1V), Vector<float>.Zero, outside);
        }

        for (int i = vectorEnd; i < width; i++)
        {
            float g = pushed[i];
            float nOld = n[i];
            float nNew = nOld + (g * g);
            float sqrtNew = MathF.Sqrt(nNew);
            float sigma = (sqrtNew - MathF.Sqrt(nOld)) / alpha;
            float zi = z[i] + (g - (sigma * w[i]));
            z[i] = zi;
            n[i] = nNew;
            // Exactly zero inside the L1 ball: this is what makes FTRL models sparse.
            w[i] = MathF.Abs(zi) <= l1
                ? 0f
                : -(zi - MathF.CopySign(l1, zi)) / (((beta + sqrtNew) / alpha) + l2);
        }
    }

    public override string ToString() =>
        $"ftrl:alpha={Spec.F(alpha)},beta={Spec.F(beta)},l1={Spec.F(l1)},l2={Spec.F(l2)}";
}

/// <summary>See <see cref="UpdateHandlers.ProximalNewton"/>: rows [w, g], pushes [g, u] or [v, -1].</summary>
internal sealed class ProximalNewtonHandler(float l1, float l2) : IUpdateHandler
{
    public int StateLength(int width)
    {
        if (width != 2)
        {
            throw new ArgumentException($"the prox handler needs a table of width 2 (rows [weight, gradient], pushes [gradient, curvature]), got width {width}");
        }
        return 0;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, StateLength(width));
        float g = pushed[0], u = pushed[1];
        if (u < 0)
        {
            row[0] = g; // [v, -1]: set the weight to v (a solver's extrapolation step), keep the last gradient
            return;
        }
        float denominator = u + l2;
        if (denominator > 0)
        {
            float z = (u * row[0]) - g;
            row[0] = MathF.Abs(z) <= l1 ? 0f : (z - MathF.CopySign(l1, z)) / denominator;
        }
        row[1] = g;
    }

    public override string ToString() => $"prox:l1={Spec.F(l1)},l2={Spec.F(l2)}";
}

/// <summary>
/// Adam with bias correction. State: m (width), v (width), then one step counter t per key,
/// so StateLength = 2 * width + 1.
/// </summary>
internal sealed class AdamHandler(float learningRate, float beta1, float beta2, float epsilon) : IUpdateHandler
{
    private readonly float _oneMinusBeta1 = 1f - beta1;
    private readonly float _oneMinusBeta2 = 1f - beta2;

    public int StateLength(int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        return (2 * width) + 1;
    }

    public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width)
    {
        HandlerChecks.Row(row, pushed, width, (2 * width) + 1);
        Span<float> w = row[..width];
        Span<float> m = row.Slice(width, width);
        Span<float> v = row.Slice(2 * width, width);

        // The counter is a float so it lives in the row. It stops increasing at 2^24, by which
        // point beta^t has long underflowed and both corrections are exactly 1 anyway.
        float t = row[3 * width] + 1f;
        row[3 * width] = t;
        float c1 = (float)(1.0 - Math.Pow(beta1, t));
        float c2 = (float)(1.0 - Math.Pow(beta2, t));

        int vectorEnd = Simd.VectorizedLength(width);
        Span<Vector<float>> wv = Simd.AsVectors(w, vectorEnd);
        Span<Vector<float>> mv = Simd.AsVectors(m, vectorEnd);
        Span<Vector<float>> vv = Simd.AsVectors(v, vectorEnd);
        ReadOnlySpan<Vector<float>> gv = Simd.AsVectors(pushed, vectorEnd);
        var eps = new Vector<float>(epsilon);
        for (int k = 0; k < wv.Length; k++)
        {
            Vector<float> g = gv[k];
            Vector<float> mk = (beta1 * mv[k]) + (_oneMinusBeta1 * g);
            Vector<float> vk = (beta2 * vv[k]) + (_oneMinusBeta2 * (g * g));
            mv[k] = mk;
            vv[k] = vk;
            wv[k] -= learningRate * (mk / c1) / (Vector.SquareRoot(vk / c2) + eps);
        }

        for (int i = vectorEnd; i < width; i++)
        {
            float g = pushed[i];
            float mi = (beta1 * m[i]) + (_oneMinusBeta1 * g);
            float vi = (beta2 * v[i]) + (_oneMinusBeta2 * (g * g));
            m[i] = mi;
            v[i] = vi;
            w[i] -= learningRate * (mi / c1) / (MathF.Sqrt(vi / c2) + epsilon);
        }
    }

    public override string ToString() =>
        $"adam:lr={Spec.F(learningRate)},beta1={Spec.F(beta1)},beta2={Spec.F(beta2)},eps={Spec.F(epsilon)}";
}

/// <summary>Span-length checks shared by the handlers; throws are kept out of line.</summary>
internal static class HandlerChecks
{
    public static void Row(Span<float> row, ReadOnlySpan<float> pushed, int width, int stateLength)
    {
        if (pushed.Length != width)
        {
            ThrowPushedLength(pushed.Length, width);
        }

        if (row.Length != width + stateLength)
        {
            ThrowRowLength(row.Length, width, stateLength);
        }
    }

    public static void Run(Span<float> rows, ReadOnlySpan<float> pushed, int width, int count, int stateLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(width);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (pushed.Length != (long)width * count)
        {
            throw new ArgumentException(
                $"pushed run has {pushed.Length} floats, expected {count} rows of width {width}.", nameof(pushed));
        }

        if (rows.Length != (long)(width + stateLength) * count)
        {
            throw new ArgumentException(
                $"stored run has {rows.Length} floats, expected {count} rows of {width} values + {stateLength} state.",
                nameof(rows));
        }
    }

    [DoesNotReturn]
    private static void ThrowPushedLength(int actual, int width) =>
        throw new ArgumentException($"pushed row has {actual} floats, expected width {width}.", "pushed");

    [DoesNotReturn]
    private static void ThrowRowLength(int actual, int width, int stateLength) =>
        throw new ArgumentException(
            $"stored row has {actual} floats, expected {width} values + {stateLength} state = {width + stateLength}.", "row");
}

/// <summary>Small helpers for <see cref="Vector{T}"/> loops with scalar tails.</summary>
internal static class Simd
{
    /// <summary>Length of the prefix of an <paramref name="n"/>-element span handled in whole vectors (0 without SIMD hardware).</summary>
    public static int VectorizedLength(int n) =>
        Vector.IsHardwareAccelerated ? n - (n % Vector<float>.Count) : 0;

    /// <summary>Views <c>span[..length]</c> as vectors; <paramref name="length"/> must be a multiple of the vector width. Loads are unaligned.</summary>
    public static Span<Vector<float>> AsVectors(Span<float> span, int length) =>
        MemoryMarshal.Cast<float, Vector<float>>(span[..length]);

    public static ReadOnlySpan<Vector<float>> AsVectors(ReadOnlySpan<float> span, int length) =>
        MemoryMarshal.Cast<float, Vector<float>>(span[..length]);

    /// <summary>The index of the first NaN or infinity in <paramref name="values"/>, or -1 (x - x is 0 exactly for finite x).</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        int vectorEnd = VectorizedLength(values.Length);
        ReadOnlySpan<Vector<float>> vectors = AsVectors(values, vectorEnd);
        for (int k = 0; k < vectors.Length; k++)
        {
            var v = vectors[k];
            if (!Vector.EqualsAll(v - v, Vector<float>.Zero))
            {
                return (k * Vector<float>.Count) + FirstNonFinite(values.Slice(k * Vector<float>.Count, Vector<float>.Count));
            }
        }
        int tail = FirstNonFinite(values[vectorEnd..]);
        return tail < 0 ? -1 : vectorEnd + tail;
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>dst += src, element-wise; the spans must have equal length.</summary>
    public static void Add(Span<float> dst, ReadOnlySpan<float> src)
    {
        int vectorEnd = VectorizedLength(dst.Length);
        Span<Vector<float>> dv = AsVectors(dst, vectorEnd);
        ReadOnlySpan<Vector<float>> sv = AsVectors(src, vectorEnd);
        for (int k = 0; k < dv.Length; k++)
        {
            dv[k] += sv[k];
        }

        for (int i = vectorEnd; i < dst.Length; i++)
        {
            dst[i] += src[i];
        }
    }
}

/// <summary>Number formatting for canonical specs.</summary>
internal static class Spec
{
    /// <summary>Shortest invariant-culture text that parses back to exactly <paramref name="value"/>.</summary>
    public static string F(float value) => value.ToString(CultureInfo.InvariantCulture);
}
