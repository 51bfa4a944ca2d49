namespace ParameterServer.Bench;

/// <summary>What one measurement does. <see cref="Rtt"/> is a push-pull of one small key: a full round trip carrying the value both ways.</summary>
public enum BenchOp
{
    Push,
    Pull,
    PushPull,
    Rtt,
}

/// <summary>One measurement: an operation on requests of <paramref name="SizeBytes"/> value bytes, <paramref name="Window"/> requests in flight per worker.</summary>
public sealed record BenchCase(BenchOp Op, int SizeBytes, int Window, int KeysPerRequest)
{
    /// <summary>Value bytes a request moves, both directions counted.</summary>
    public long BytesPerRequest => Op is BenchOp.PushPull or BenchOp.Rtt ? 2L * SizeBytes : SizeBytes;

    public int Width => SizeBytes / sizeof(float) / KeysPerRequest;

    public static string Name(BenchOp op) => op.ToString().ToLowerInvariant();

    public static BenchOp ParseOp(string text) => text.Trim().ToLowerInvariant() switch
    {
        "push" => BenchOp.Push,
        "pull" => BenchOp.Pull,
        "pushpull" => BenchOp.PushPull,
        _ => throw new ArgumentException($"unknown operation '{text}': expected push, pull or pushpull"),
    };
}

/// <summary>The measurements of a `pserver bench kv` run, the same on every worker.</summary>
public sealed record KvBenchPlan
{
    public const int MaxWindow = 1024;

    public IReadOnlyList<int> Sizes { get; init; } = [4 << 10, 64 << 10, 1 << 20, 16 << 20];

    public IReadOnlyList<int> Windows { get; init; } = [1, 8, 32];

    public IReadOnlyList<BenchOp> Ops { get; init; } = [BenchOp.Push, BenchOp.Pull, BenchOp.PushPull];

    /// <summary>Keys a request's value bytes are split over (each key holds size / 4 / K floats).</summary>
    public int KeysPerRequest { get; init; } = 1;

    /// <summary>Value sizes of the small-message round-trip measurements (one key each); empty to skip them.</summary>
    public IReadOnlyList<int> RttSizes { get; init; } = [4, 1 << 10];

    public IReadOnlyList<int> RttWindows { get; init; } = [1, 32];

    /// <summary>Measured seconds per case (after a short warm-up that is not counted).</summary>
    public double Duration { get; init; } = 2;

    public double Warmup => Math.Min(0.5, Duration / 4);

    public IEnumerable<BenchCase> Cases()
    {
        foreach (int size in Sizes)
        {
            foreach (int window in Windows)
            {
                foreach (var op in Ops)
                {
                    yield return new BenchCase(op, size, window, KeysPerRequest);
                }
            }
        }
        foreach (int size in RttSizes)
        {
            foreach (int window in RttWindows)
            {
                yield return new BenchCase(BenchOp.Rtt, size, window, 1);
            }
        }
    }

    public void Validate()
    {
        if (!(Duration is > 0 and <= 3600))
        {
            throw new ArgumentException($"--duration must be in (0, 3600] seconds, got {Duration}");
        }
        if (KeysPerRequest < 1)
        {
            throw new ArgumentException($"--keys-per-request must be at least 1, got {KeysPerRequest}");
        }
        foreach (int w in Windows.Concat(RttWindows))
        {
            if (w is < 1 or > MaxWindow)
            {
                throw new ArgumentException($"a window must be in [1, {MaxWindow}], got {w}");
            }
        }
        foreach (int size in Sizes)
        {
            if (size % (sizeof(float) * KeysPerRequest) != 0)
            {
                throw new ArgumentException($"size {ByteSizes.Format(size)} is not a whole number of floats per key with {KeysPerRequest} keys per request");
            }
        }
        foreach (int size in RttSizes)
        {
            if (size % sizeof(float) != 0 || size > 1 << 20)
            {
                throw new ArgumentException($"a round-trip size must be a multiple of 4 bytes up to 1MB, got {ByteSizes.Format(size)}");
            }
        }
        if (!Cases().Any())
        {
            throw new ArgumentException("nothing to measure: give at least one size and window, or one round-trip size");
        }
    }
}
