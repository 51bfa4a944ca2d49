namespace ParameterServer.Apps.Lda.Sampling;

/// <summary>
/// The counts a sampler works against: word-topic counts (word-major: the K counts of word w at w * K) and the
/// topic totals. In a cluster these are a worker's copy of the servers' tables, changed in place as it samples.
/// </summary>
public sealed class TopicCounts
{
    public TopicCounts(int vocabulary, int topics)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(topics, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabulary, 1);
        Vocabulary = vocabulary;
        Topics = topics;
        WordTopic = new int[checked(vocabulary * topics)];
        TopicTotals = new int[topics];
    }

    public int Vocabulary { get; }

    public int Topics { get; }

    public int[] WordTopic { get; }

    public int[] TopicTotals { get; }

    public Span<int> Row(int word) => WordTopic.AsSpan(word * Topics, Topics);

    /// <summary>Tokens counted: the sum of the topic totals.</summary>
    public long TokenCount()
    {
        long sum = 0;
        foreach (int n in TopicTotals)
        {
            sum += n;
        }
        return sum;
    }
}

/// <summary>Hyperparameters of the Dirichlet priors: alpha on each document's topic mix, beta on each topic's words.</summary>
public readonly record struct LdaPriors(double Alpha, double Beta)
{
    public void Validate()
    {
        if (!(Alpha > 0) || !(Beta > 0) || double.IsInfinity(Alpha) || double.IsInfinity(Beta))
        {
            throw new ArgumentException($"--alpha and --beta must be positive numbers, got {Alpha} and {Beta}");
        }
    }
}

/// <summary>A small, fast generator (xoshiro128**): a sampler draws several numbers per token.</summary>
public struct FastRandom
{
    private uint _a, _b, _c, _d;

    public FastRandom(ulong seed)
    {
        // splitmix64 spreads any seed over the state
        ulong z = seed;
        ulong Next()
        {
            z += 0x9E3779B97F4A7C15UL;
            ulong x = z;
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
            x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
            return x ^ (x >> 31);
        }
        ulong s0 = Next(), s1 = Next();
        _a = (uint)s0;
        _b = (uint)(s0 >> 32);
        _c = (uint)s1;
        _d = (uint)(s1 >> 32) | 1;
    }

    public uint NextUInt()
    {
        uint result = uint.RotateLeft(_b * 5, 7) * 9;
        uint t = _b << 9;
        _c ^= _a;
        _d ^= _b;
        _b ^= _c;
        _a ^= _d;
        _c ^= t;
        _d = uint.RotateLeft(_d, 11);
        return result;
    }

    /// <summary>Uniform in [0, n).</summary>
    public int Next(int n) => (int)(((ulong)NextUInt() * (uint)n) >> 32);

    /// <summary>Uniform in [0, 1).</summary>
    public float NextFloat() => (NextUInt() >> 8) * (1f / (1 << 24));
}
