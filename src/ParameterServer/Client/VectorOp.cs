using ParameterServer.Protocol;

namespace ParameterServer.Client;

/// <summary>
/// One vector operation that the servers run on whole dense tables where they live (<see cref="PsClient.RunVectorOpsAsync"/>),
/// so that parameter-sized vectors never cross the network: the building blocks of L-BFGS and other batch solvers. The
/// tables must share a <see cref="TableSpec.PlacementGroup"/>, size, width and block size, and keep no handler state.
/// </summary>
public readonly record struct VectorOp
{
    private VectorOp(VectorOpKind kind, PsTable target, PsTable source, double alpha, double beta)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(source);
        Kind = kind;
        Target = target;
        Source = source;
        Alpha = alpha;
        Beta = beta;
    }

    internal VectorOpKind Kind { get; }

    public PsTable Target { get; }

    public PsTable Source { get; }

    public double Alpha { get; }

    public double Beta { get; }

    /// <summary>target = alpha * target + beta * source (alpha 0: target = beta * source, whatever target held).</summary>
    public static VectorOp Axpby(PsTable target, double alpha, PsTable source, double beta) => new(VectorOpKind.Axpby, target, source, alpha, beta);

    /// <summary>target += alpha * source.</summary>
    public static VectorOp Axpy(PsTable target, double alpha, PsTable source) => Axpby(target, 1, source, alpha);

    /// <summary>target = source.</summary>
    public static VectorOp Copy(PsTable target, PsTable source) => Axpby(target, 0, source, 1);

    /// <summary>target *= alpha (0: every value becomes 0).</summary>
    public static VectorOp Scale(PsTable target, double alpha) => alpha == 0 ? Axpby(target, 0, target, 0) : Axpby(target, alpha, target, 0);

    /// <summary>The sum of a[i] * b[i] over every value (in float64 across blocks); its result comes back in order.</summary>
    public static VectorOp Dot(PsTable a, PsTable b) => new(VectorOpKind.Dot, a, b, 0, 0);

    /// <summary>The sum of |a[i]| over every value; its result comes back in order, like <see cref="Dot"/>'s.</summary>
    public static VectorOp Norm1(PsTable a) => new(VectorOpKind.Norm1, a, a, 0, 0);

    /// <summary>The largest |a[i]|; its result comes back in order, like <see cref="Dot"/>'s.</summary>
    public static VectorOp MaxAbs(PsTable a) => new(VectorOpKind.MaxAbs, a, a, 0, 0);

    /// <summary>
    /// gradient (of a smooth f, at <paramref name="weights"/>) becomes the pseudo-gradient of f + l1 |weights|_1
    /// (OWL-QN, Andrew and Gao 2007): g + l1 sign(w) where w is not 0; where it is, the one-sided derivative that
    /// descends (g + l1 when that is below 0, g - l1 when that is above 0), else 0.
    /// </summary>
    public static VectorOp PseudoGradient(PsTable gradient, PsTable weights, double l1) => new(VectorOpKind.PseudoGradient, gradient, weights, l1, 0);

    /// <summary>target[i] = 0 where its sign is opposite to reference[i]'s: a point kept in the orthant of another (OWL-QN's step).</summary>
    public static VectorOp ProjectOrthant(PsTable target, PsTable reference) => new(VectorOpKind.SignMask, target, reference, 1, 0);

    /// <summary>direction[i] = 0 unless its sign is opposite to gradient[i]'s: only coordinates that descend move (OWL-QN's direction).</summary>
    public static VectorOp ProjectDescent(PsTable direction, PsTable gradient) => new(VectorOpKind.SignMask, direction, gradient, -1, 1);
}
