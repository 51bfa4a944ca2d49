using System.Globalization;

namespace ParameterServer.Client;

/// <summary>
/// How far a worker's calls on a table may overlap (the paper's bounded delay): call k waits until every
/// call on the same table up to k - tau - 1 has completed. tau = 0 is sequential, unbounded is eventual.
/// With sync tables this also bounds how far the fastest worker runs ahead of the slowest.
/// </summary>
public readonly record struct Consistency
{
    private Consistency(int tau) => Tau = tau;

    /// <summary>The bound; <see cref="int.MaxValue"/> for eventual.</summary>
    public int Tau { get; }

    public static Consistency Sequential => new(0);

    public static Consistency Eventual => new(int.MaxValue);

    public static Consistency BoundedDelay(int tau) =>
        tau >= 0 ? new(tau) : throw new ArgumentOutOfRangeException(nameof(tau), tau, "tau must be >= 0");

    /// <summary>Parses <c>sequential</c>, <c>eventual</c> or <c>bounded:TAU</c>.</summary>
    public static Consistency Parse(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        if (t == "sequential")
        {
            return Sequential;
        }
        if (t is "eventual" or "bounded:inf")
        {
            return Eventual;
        }
        if (t.StartsWith("bounded:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out int tau))
        {
            return BoundedDelay(tau);
        }
        throw new ArgumentException($"consistency must be sequential, eventual or bounded:TAU (TAU >= 0), got '{text}'");
    }

    public override string ToString() => Tau switch
    {
        0 => "sequential",
        int.MaxValue => "eventual",
        _ => $"bounded:{Tau}",
    };
}
