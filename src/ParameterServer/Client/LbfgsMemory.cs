namespace ParameterServer.Client;

/// <summary>
/// L-BFGS's memory, kept where the parameters live: the last m steps s and gradient changes y, each a dense table
/// on the servers, and the two-loop recursion run as vector operations (<see cref="PsClient.RunVectorOpsAsync"/>), so
/// only dot products reach the caller. Shared by the batch solvers (Sandblaster L-BFGS, OWL-QN); one caller drives it.
/// </summary>
public sealed class LbfgsMemory
{
    private readonly PsClient _client;
    private readonly PsTable[] _s;
    private readonly PsTable[] _y;
    private readonly double[] _rho;
    private readonly double[] _alpha;
    private int _newest = -1;

    private LbfgsMemory(PsClient client, PsTable[] s, PsTable[] y)
    {
        _client = client;
        _s = s;
        _y = y;
        _rho = new double[s.Length];
        _alpha = new double[s.Length];
    }

    /// <summary>Pairs the recursion uses now.</summary>
    public int Count { get; private set; }

    /// <summary>
    /// Declares 2 x <paramref name="history"/> tables cut like <paramref name="like"/> (a dense table in a placement
    /// group), named NAME.s0, NAME.y0, and so on.
    /// </summary>
    public static async Task<LbfgsMemory> DeclareAsync(PsClient client, string name, TableSpec like, int history, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(like);
        if (history < 1)
        {
            throw new ArgumentException($"L-BFGS needs a history of at least 1 pair, got {history}", nameof(history));
        }
        if (like.DenseSize == 0 || string.IsNullOrEmpty(like.PlacementGroup))
        {
            throw new ArgumentException($"L-BFGS's vectors are cut like a dense table in a placement group; {like.Name} is not", nameof(like));
        }
        var s = new PsTable[history];
        var y = new PsTable[history];
        for (int i = 0; i < history; i++)
        {
            s[i] = await client.DeclareTableAsync(like.WithName($"{name}.s{i}"), cancellationToken).ConfigureAwait(false);
            y[i] = await client.DeclareTableAsync(like.WithName($"{name}.y{i}"), cancellationToken).ConfigureAwait(false);
        }
        return new LbfgsMemory(client, s, y);
    }

    /// <summary>
    /// The tables of the next pair, in the oldest pair's slot when the memory is full (that pair is dropped now); the
    /// caller fills them and calls <see cref="CommitAsync"/>. Until then the recursion leaves the slot out.
    /// </summary>
    public (PsTable S, PsTable Y) Reserve()
    {
        _newest = (_newest + 1) % _s.Length;
        Count = Math.Min(Count, _s.Length - 1);
        return (_s[_newest], _y[_newest]);
    }

    /// <summary>The reserved pair's step, e.g. to shorten it after a backtrack.</summary>
    public PsTable ReservedStep => _newest >= 0 ? _s[_newest] : throw new InvalidOperationException("no pair is reserved");

    /// <summary>
    /// Takes the reserved pair into the memory when its curvature s.y is positive; otherwise forgets it (the update
    /// would not stay positive definite). Returns whether it was taken.
    /// </summary>
    public async Task<bool> CommitAsync(CancellationToken cancellationToken = default)
    {
        double sy = (await Run(cancellationToken, VectorOp.Dot(_s[_newest], _y[_newest])).ConfigureAwait(false))[0];
        if (sy > 1e-10)
        {
            _rho[_newest] = 1 / sy;
            Count = Math.Min(Count + 1, _s.Length);
            return true;
        }
        _newest = (_newest + _s.Length - 1) % _s.Length;
        return false;
    }

    /// <summary>Forgets every pair (after a direction that does not descend).</summary>
    public void Clear() => Count = 0;

    /// <summary>
    /// q becomes H q, the inverse Hessian estimate times q (the two-loop recursion, newest pair first, with the
    /// newest pair's s.y / y.y as the initial scaling); unchanged while the memory is empty. Each update of q goes in
    /// one program with the next dot product: 2m + 2 round trips to the servers.
    /// </summary>
    public async Task ApplyInverseHessianAsync(PsTable q, CancellationToken cancellationToken = default)
    {
        if (Count == 0)
        {
            return;
        }
        int m = _s.Length;
        VectorOp? pending = null;
        for (int j = 0; j < Count; j++)
        {
            int i = (_newest - j + m) % m;
            double sq = (await RunAfter(pending, cancellationToken, VectorOp.Dot(_s[i], q)).ConfigureAwait(false))[0];
            _alpha[i] = _rho[i] * sq;
            pending = VectorOp.Axpy(q, -_alpha[i], _y[i]);
        }
        var scaling = await RunAfter(pending, cancellationToken, VectorOp.Dot(_s[_newest], _y[_newest]), VectorOp.Dot(_y[_newest], _y[_newest])).ConfigureAwait(false);
        pending = VectorOp.Scale(q, scaling[0] / scaling[1]);
        for (int j = Count - 1; j >= 0; j--)
        {
            int i = (_newest - j + m) % m;
            double yq = (await RunAfter(pending, cancellationToken, VectorOp.Dot(_y[i], q)).ConfigureAwait(false))[0];
            pending = VectorOp.Axpy(q, _alpha[i] - (_rho[i] * yq), _s[i]);
        }
        await RunAfter(pending, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="first"/> (when there is one) and the rest in one program.</summary>
    private Task<double[]> RunAfter(VectorOp? first, CancellationToken ct, params VectorOp[] rest) =>
        _client.RunVectorOpsAsync(first is { } op ? [op, .. rest] : rest, ct);

    private Task<double[]> Run(CancellationToken ct, params VectorOp[] ops) => _client.RunVectorOpsAsync(ops, ct);
}
