using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;
using ParameterServer.Transport;

namespace ParameterServer.Server.Data;

/// <summary>
/// Server-side vector operations (axpby, elementwise masks, dot products and norms) on the tables of one placement group, so that a solver such
/// as L-BFGS combines parameter-sized vectors where they live. A program runs over every block this server holds,
/// primary or replica, so every copy of a block changes alike; a reduction (dot product, norm) counts only the blocks this server is
/// primary for, so the shares the client adds up count every block once.
/// </summary>
internal sealed class VectorRequests(LocalServer self, ViewGate gate, Answers answers, TableSet tables)
{
    // One program at a time: a program holds two blocks' locks at once, a push only one, so no cycle can form.
    private readonly Lock _serial = new();

    public void Handle(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        WireVectorOp[] ops;
        try
        {
            ops = VectorProgramCodec.Read(payload);
        }
        catch (ProtocolException ex)
        {
            answers.SendError(connection, header, ErrorCode.MalformedPayload, $"vector program: {ex.Message}");
            return;
        }
        if (Check(header, ops, out var stores) is { } problem)
        {
            answers.SendError(connection, header, problem.Code, problem.Message);
            return;
        }
        int dotCount = ops.Count(o => o.Kind.IsReduction());
        var dots = new double[dotCount];
        string? moved = null;
        gate.EnterApply(); // no view is installed while a program runs
        try
        {
            var view = gate.Current!;
            if (view.PlacementFingerprint != header.Round)
            {
                moved = $"the servers changed (server {self.Id} moved to view {view.Number}) while the program cut for view {header.ViewNumber} waited";
            }
            else
            {
                lock (_serial)
                {
                    Run(view, ops, stores, dots);
                }
            }
        }
        finally
        {
            gate.ExitApply();
        }
        if (moved is not null)
        {
            answers.SendError(connection, header, ErrorCode.NotReady, moved);
            return;
        }
        connection.Send(answers.ResponseTo(header), MemoryMarshal.AsBytes(dots.AsSpan()));
    }

    private (ErrorCode Code, string Message)? Check(in FrameHeader header, WireVectorOp[] ops, out TableStore[] stores)
    {
        stores = new TableStore[ops.Length * 2];
        if (!self.Lease.IsHeld(out long lapsedMs))
        {
            return (ErrorCode.WrongOwner, $"server {self.Id} has not heard from the scheduler in time (its lease ended {lapsedMs} ms ago): it runs no vector operation until the scheduler answers");
        }
        var view = gate.Current;
        if (view is null || view.PlacementFingerprint != header.Round)
        {
            return (ErrorCode.NotReady, $"server {self.Id} at view {view?.Number ?? 0} places blocks differently from the program's view {header.ViewNumber}: every server must run it under the same placement");
        }
        if (view.InTransition)
        {
            return (ErrorCode.NotReady, $"key ranges are migrating in view {view.Number}: vector operations wait until every block has settled");
        }
        TableStore? first = null;
        for (int i = 0; i < ops.Length; i++)
        {
            for (int side = 0; side < 2; side++)
            {
                int id = side == 0 ? ops[i].Target : ops[i].Source;
                var store = tables.Get(id);
                if (store is null)
                {
                    return (ErrorCode.UnknownTable, $"vector operation {i}: server {self.Id} has no table {id}");
                }
                var info = store.Info;
                if (!info.IsDense || info.Group.Length == 0 || store.RowStride != store.Width)
                {
                    return (ErrorCode.InvalidArgument, $"vector operation {i}: table {info.Describe()} must be dense, in a placement group, with an update handler that keeps no state (sum or sgd)");
                }
                first ??= store;
                if (info.Group != first.Info.Group || info.DenseSize != first.Info.DenseSize || info.BlockKeys != first.Info.BlockKeys || info.Width != first.Info.Width)
                {
                    return (ErrorCode.InvalidArgument, $"vector operation {i}: table {info.Describe()} is not cut like {first.Info.Describe()} (same placement group, size, width and block size needed)");
                }
                stores[(i * 2) + side] = store;
            }
        }
        return null;
    }

    private void Run(ClusterView view, WireVectorOp[] ops, TableStore[] stores, double[] dots)
    {
        if (ops.Length == 0)
        {
            return;
        }
        var placement = view.PlacementOf(stores[0].Info); // the group's tables share it block for block
        int mySlot = view.SlotOfServer(self.Id);
        Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
        long blocks = stores[0].Info.BlockCount;
        for (long b = 0; b < blocks; b++)
        {
            int n = placement.ChainOfBlock(b, chain);
            if (!chain[..n].Contains(mySlot))
            {
                continue;
            }
            bool primary = chain[0] == mySlot;
            int dot = 0;
            for (int i = 0; i < ops.Length; i++)
            {
                var op = ops[i];
                var target = stores[i * 2];
                var source = stores[(i * 2) + 1];
                lock (target.BlockGate(b))
                {
                    lock (source.BlockGate(b))
                    {
                        var t = target.DenseBlockValues(b);
                        var s = source.DenseBlockValues(b);
                        switch (op.Kind)
                        {
                            case VectorOpKind.Dot or VectorOpKind.Norm1 or VectorOpKind.MaxAbs:
                                if (primary && t.Length > 0)
                                {
                                    dots[dot] = op.Kind switch
                                    {
                                        VectorOpKind.Dot => dots[dot] + TensorPrimitives.Dot(t, s),
                                        VectorOpKind.Norm1 => dots[dot] + TensorPrimitives.SumOfMagnitudes(t),
                                        _ => Math.Max(dots[dot], Math.Abs(TensorPrimitives.MaxMagnitude(t))),
                                    };
                                }
                                dot++;
                                break;
                            case VectorOpKind.PseudoGradient:
                                PseudoGradient(t, s, (float)op.Alpha);
                                break;
                            case VectorOpKind.SignMask:
                                SignMask(t, s, (float)op.Alpha, strict: op.Beta != 0);
                                break;
                            default:
                                Axpby(t, s, (float)op.Alpha, (float)op.Beta);
                                break;
                        }
                    }
                }
            }
        }
    }

    private static void Axpby(Span<float> t, ReadOnlySpan<float> s, float alpha, float beta)
    {
        if (alpha == 0)
        {
            TensorPrimitives.Multiply(s, beta, t);
            return;
        }
        if (alpha != 1)
        {
            TensorPrimitives.Multiply(t, alpha, t);
        }
        TensorPrimitives.MultiplyAdd(s, beta, t, t);
    }

    private static void PseudoGradient(Span<float> g, ReadOnlySpan<float> w, float l1)
    {
        for (int i = 0; i < g.Length; i++)
        {
            float x = w[i], d = g[i];
            g[i] = x > 0 ? d + l1 : x < 0 ? d - l1 : d + l1 < 0 ? d + l1 : d - l1 > 0 ? d - l1 : 0;
        }
    }

    private static void SignMask(Span<float> t, ReadOnlySpan<float> s, float sign, bool strict)
    {
        for (int i = 0; i < t.Length; i++)
        {
            float product = sign * t[i] * s[i];
            if (strict ? product <= 0 : product < 0)
            {
                t[i] = 0;
            }
        }
    }
}
