namespace ParameterServer.Protocol;

/// <summary>What one server-side vector operation does (<see cref="MessageType.VectorOps"/>).</summary>
internal enum VectorOpKind : byte
{
    /// <summary>target = alpha * target + beta * source, row by row (alpha 0: target = beta * source, whatever target held).</summary>
    Axpby = 1,

    /// <summary>The sum over every value of target * source; each server answers its share (the blocks it is primary for).</summary>
    Dot = 2,

    /// <summary>The sum of |target| (a reduction, like Dot).</summary>
    Norm1 = 3,

    /// <summary>The largest |target| (a reduction: the client keeps the largest share).</summary>
    MaxAbs = 4,

    /// <summary>target (a smooth gradient) becomes OWL-QN's pseudo-gradient of target + alpha |source|_1 at source.</summary>
    PseudoGradient = 5,

    /// <summary>target = 0 where alpha * target * source is negative (beta 0) or not positive (beta 1).</summary>
    SignMask = 6,
}

/// <summary>Which operations answer with a value.</summary>
internal static class VectorOpKinds
{
    public static bool IsReduction(this VectorOpKind kind) => kind is VectorOpKind.Dot or VectorOpKind.Norm1 or VectorOpKind.MaxAbs;
}

/// <summary>One operation of a program: table ids as the view numbers them.</summary>
internal readonly record struct WireVectorOp(VectorOpKind Kind, int Target, int Source, double Alpha, double Beta);

/// <summary>
/// The payload of a VectorOps request: [u32 count] then per operation [u8 kind][i32 target][i32 source][f64 alpha][f64 beta].
/// The answer: one f64 per reduction (Dot, Norm1, MaxAbs), in order.
/// </summary>
internal static class VectorProgramCodec
{
    public const int MaxOps = 4096;

    public static byte[] Write(IReadOnlyList<WireVectorOp> ops)
    {
        var w = new PayloadWriter();
        w.WriteInt32(ops.Count);
        foreach (var op in ops)
        {
            w.WriteByte((byte)op.Kind);
            w.WriteInt32(op.Target);
            w.WriteInt32(op.Source);
            w.WriteDouble(op.Alpha);
            w.WriteDouble(op.Beta);
        }
        return w.WrittenSpan.ToArray();
    }

    public static WireVectorOp[] Read(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        int count = r.ReadCount(MaxOps);
        var ops = new WireVectorOp[count];
        for (int i = 0; i < count; i++)
        {
            var kind = (VectorOpKind)r.ReadByte();
            if (kind is < VectorOpKind.Axpby or > VectorOpKind.SignMask)
            {
                throw new ProtocolException($"vector operation {i} has unknown kind {(byte)kind}");
            }
            ops[i] = new WireVectorOp(kind, r.ReadInt32(), r.ReadInt32(), r.ReadDouble(), r.ReadDouble());
        }
        if (r.Remaining != 0)
        {
            throw new ProtocolException($"{r.Remaining} bytes follow the {count} vector operations");
        }
        return ops;
    }
}
