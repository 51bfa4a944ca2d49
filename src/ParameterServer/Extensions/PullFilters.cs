using System.Globalization;

namespace ParameterServer.Extensions;

/// <summary>
/// Decides which rows of a pull's answer are worth sending (the paper's user-defined filters, on the server's side).
/// A table names its pull filter (<see cref="TableSpec.PullFilter"/>); every server runs it on each answer to each worker,
/// against the rows that server last sent to that worker. A row it leaves out is not sent: the worker uses the value it
/// was last sent for that key instead. Rows never sent to the worker are always sent, whatever the filter says.
/// </summary>
/// <remarks>Implementations must be stateless apart from their configuration; servers call them concurrently for different workers.</remarks>
public interface IPullFilter
{
    /// <param name="keys">The answer's keys, sorted.</param>
    /// <param name="current">keys.Length x <paramref name="width"/> values: the rows as the server holds them now.</param>
    /// <param name="lastSent">The rows as this worker was last sent them (zeros where it never was).</param>
    /// <param name="width">Values per key.</param>
    /// <param name="keep">One flag per key, all true on entry: clear it to leave the row out.</param>
    void Filter(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> current, ReadOnlySpan<float> lastSent, int width, Span<bool> keep);
}

/// <summary>The built-in pull filters, and the parser for their names.</summary>
public static class PullFilters
{
    /// <summary>The names every server knows without registration.</summary>
    internal static IReadOnlyList<string> BuiltInNames { get; } = ["none", "sigmod"];

    /// <summary>Parses "none" (null) or "sigmod:THRESHOLD"; anything else is an <see cref="ArgumentException"/> saying what is accepted.</summary>
    public static IPullFilter? Parse(string spec)
    {
        string[] parts = spec.Split(':', 2);
        string name = parts[0].Trim().ToLowerInvariant();
        switch (name)
        {
            case "none" or "":
                return null;
            case "sigmod":
                if (parts.Length < 2 || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float threshold) || !(threshold >= 0) || float.IsInfinity(threshold))
                {
                    throw new ArgumentException($"pull filter '{spec}': sigmod takes a threshold >= 0, as in sigmod:0.001");
                }
                return new SignificantlyModifiedPullFilter(threshold);
            default:
                throw new ArgumentException($"pull filter '{spec}': unknown filter '{parts[0]}' (use none, sigmod:THRESHOLD, or a name registered with ServerOptions.AddPullFilter)");
        }
    }

    /// <summary>True when <paramref name="spec"/> names a built-in filter (then it is checked where the table is declared).</summary>
    internal static bool IsBuiltIn(string spec) => BuiltInNames.Contains(spec.Split(':', 2)[0].Trim().ToLowerInvariant()) || spec.Trim().Length == 0;
}

/// <summary>
/// Sends a row only when one of its values differs by more than a threshold from what the worker was last sent: a
/// worker's copy of every row it pulls is then never further than the threshold from the server's.
/// </summary>
public sealed class SignificantlyModifiedPullFilter(float threshold) : IPullFilter
{
    public float Threshold { get; } = threshold;

    public void Filter(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> current, ReadOnlySpan<float> lastSent, int width, Span<bool> keep)
    {
        for (int i = 0; i < keys.Length; i++)
        {
            var now = current.Slice(i * width, width);
            var then = lastSent.Slice(i * width, width);
            bool significant = false;
            for (int j = 0; j < width && !significant; j++)
            {
                significant = !(MathF.Abs(now[j] - then[j]) <= Threshold); // NaN counts as changed
            }
            keep[i] = significant;
        }
    }
}
