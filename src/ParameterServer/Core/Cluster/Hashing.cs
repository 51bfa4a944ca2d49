namespace ParameterServer.Core.Cluster;

/// <summary>The 64-bit mix the ring hashes keys with; apps may use it to hash feature ids into keys.</summary>
public static class Hashing
{
    /// <summary>splitmix64's finalizer: a bijective 64-bit mix, so distinct keys stay distinct and consecutive ones scatter.</summary>
    public static ulong Mix64(ulong x)
    {
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9UL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebUL;
        return x ^ (x >> 31);
    }

    /// <summary>FNV-1a's starting value, for <see cref="Fold"/>.</summary>
    internal const ulong FoldSeed = 14695981039346656037UL;

    /// <summary>One FNV-1a step: folds <paramref name="part"/> into <paramref name="hash"/> (fingerprints of names and views).</summary>
    internal static ulong Fold(ulong hash, ulong part) => (hash ^ part) * 1099511628211UL;
}
