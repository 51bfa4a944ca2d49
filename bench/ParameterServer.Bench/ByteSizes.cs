using System.Globalization;

namespace ParameterServer.Bench;

/// <summary>Byte counts as people write them: 4B, 64KB, 1MB, 16MiB. K, M and G are binary (1024) multiples.</summary>
public static class ByteSizes
{
    public static int Parse(string text)
    {
        string t = text.Trim();
        int end = 0;
        while (end < t.Length && char.IsAsciiDigit(t[end]))
        {
            end++;
        }
        if (end == 0 || !long.TryParse(t.AsSpan(0, end), NumberStyles.None, CultureInfo.InvariantCulture, out long number))
        {
            throw new ArgumentException($"'{text}' is not a size: expected a number with an optional unit (B, KB, MB, GB), e.g. 64KB");
        }
        long unit = t[end..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            var u => throw new ArgumentException($"'{text}' has an unknown unit '{u}': use B, KB, MB or GB (binary multiples)"),
        };
        long bytes = number * unit;
        return bytes is > 0 and <= int.MaxValue ? (int)bytes : throw new ArgumentException($"size '{text}' must be between 1 byte and 2 GB");
    }

    public static int[] ParseList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToArray();

    /// <summary>The shortest exact form: 4B, 64KB, 1MB, 1536B.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30}GB",
        >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20}MB",
        >= 1L << 10 when bytes % (1L << 10) == 0 => $"{bytes >> 10}KB",
        _ => $"{bytes}B",
    };
}
