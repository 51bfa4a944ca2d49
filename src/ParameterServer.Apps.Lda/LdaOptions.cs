using ParameterServer.Apps.Lda.Sampling;
using ParameterServer.Client;

namespace ParameterServer.Apps.Lda;

/// <summary>One LDA run, as every worker sees it.</summary>
public sealed record LdaOptions
{
    /// <summary>The training corpus (UCI docword.txt or lda-c; gzip accepted).</summary>
    public required string Data { get; init; }

    /// <summary>uci or ldac.</summary>
    public string Format { get; init; } = "uci";

    /// <summary>One word per line; needed for lda-c, optional for UCI (then topics print word ids).</summary>
    public string? Vocabulary { get; init; }

    public int Topics { get; init; } = 20;

    public int Iterations { get; init; } = 300;

    public double Alpha { get; init; } = 0.1;

    public double Beta { get; init; } = 0.1;

    /// <summary>A held-out corpus in the same format and vocabulary, scored by document completion.</summary>
    public string? Test { get; init; }

    /// <summary>Without --test: hold out every N-th training document (0: none).</summary>
    public int HoldOut { get; init; }

    /// <summary>Held-out perplexity every this many iterations (and after the last).</summary>
    public int EvalEvery { get; init; } = 10;

    public string? ModelOut { get; init; }

    /// <summary>The true topics of a generated corpus (`pserver data gen-lda`'s OUT.topics): the run reports how well it recovers them.</summary>
    public string? TrueTopics { get; init; }

    /// <summary>Value encoding of the count pushes and pulls: none, zero, lz or zero+lz (lossless only).</summary>
    public string Compression { get; init; } = "none";

    /// <summary>O(K) Gibbs instead of LightLDA's O(1) sampler (the reference).</summary>
    public bool ExactGibbs { get; init; }

    public int Seed { get; init; } = 1;

    /// <summary>How far workers may run apart: sequential (bulk-synchronous iterations), bounded:TAU (a sweep may miss
    /// the others' last TAU sweeps) or eventual.</summary>
    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    public LdaPriors Priors => new(Alpha, Beta);

    public void Validate()
    {
        if (Topics < 1 || Topics > 100_000)
        {
            throw new ArgumentException($"--topics must be in 1..100000, got {Topics}");
        }
        if (Iterations < 1 || EvalEvery < 1)
        {
            throw new ArgumentException($"--iterations and --eval-every must be at least 1, got {Iterations} and {EvalEvery}");
        }
        if (HoldOut is < 0 or 1)
        {
            throw new ArgumentException($"--hold-out holds out every N-th document: N must be 0 (none) or at least 2, got {HoldOut}");
        }
        if (Format is not ("uci" or "ldac"))
        {
            throw new ArgumentException($"--format '{Format}' is not one of uci, ldac");
        }
        Priors.Validate();
    }
}
