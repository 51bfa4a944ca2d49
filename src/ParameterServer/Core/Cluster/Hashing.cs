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
}
