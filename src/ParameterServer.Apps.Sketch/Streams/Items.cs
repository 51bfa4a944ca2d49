using System.IO.Hashing;
using System.Runtime.CompilerServices;

namespace ParameterServer.Apps.Sketch.Streams;

/// <summary>How items become the 64-bit hashes a sketch counts: XxHash3 of the item's bytes (UTF-8 for text).</summary>
public static class Items
{
    /// <summary>The hash of an item given as bytes (a token of a text stream).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Hash(ReadOnlySpan<byte> item) => XxHash3.HashToUInt64(item);

    /// <summary>The hash of an item given as text (what `sketch query --items` asks for).</summary>
    public static ulong Hash(string item)
    {
        ArgumentNullException.ThrowIfNull(item);
        Span<byte> bytes = stackalloc byte[256];
        int n = System.Text.Encoding.UTF8.GetMaxByteCount(item.Length) <= bytes.Length ? System.Text.Encoding.UTF8.GetBytes(item, bytes) : -1;
        return n >= 0 ? Hash(bytes[..n]) : Hash(System.Text.Encoding.UTF8.GetBytes(item));
    }

    /// <summary>The name of a synthetic item: its id in decimal (so `--items 17` finds id 17).</summary>
    public static ulong HashOfId(ulong id)
    {
        Span<byte> digits = stackalloc byte[20];
        id.TryFormat(digits, out int n, provider: System.Globalization.CultureInfo.InvariantCulture);
        return Hash(digits[..n]);
    }
}
