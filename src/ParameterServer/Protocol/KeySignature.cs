using System.Numerics;
using System.Runtime.InteropServices;

namespace ParameterServer.Protocol;

/// <summary>
/// Names a key list by 128 bits of hash (<see cref="FrameFlags.KeysCached"/>): two independently seeded
/// multiply-rotate lanes over the keys, the count and the table. A collision would substitute another key list, so
/// both lanes must collide at once (about 2^-128 for a pair of lists); the receiver also checks the count.
/// </summary>
internal readonly record struct KeySignature(ulong Low, ulong High)
{
    public const int Bytes = 16;

    private const ulong P1 = 0x9E3779B185EBCA87UL;
    private const ulong P2 = 0xC2B2AE3D27D4EB4FUL;
    private const ulong P3 = 0x165667B19E3779F9UL;
    private const ulong P4 = 0xD6E8FEB86659FD93UL;

    public static KeySignature Of(int tableId, ReadOnlySpan<ulong> keys)
    {
        ulong a = P1 ^ (ulong)(uint)tableId;
        ulong b = P4 ^ ((ulong)(uint)keys.Length << 32) ^ (ulong)(uint)tableId;
        foreach (ulong key in keys)
        {
            a = BitOperations.RotateLeft(a ^ (key * P2), 31) * P1;
            b = BitOperations.RotateLeft(b + (key * P3), 29) * P4;
        }
        return new KeySignature(Mix(a ^ (ulong)keys.Length), Mix(b ^ a));
    }

    public void Write(Span<byte> destination)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(destination[..Bytes]);
        words[0] = Low;
        words[1] = High;
    }

    public static KeySignature Read(ReadOnlySpan<byte> source)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(source[..Bytes]);
        return new KeySignature(words[0], words[1]);
    }

    private static ulong Mix(ulong x)
    {
        x ^= x >> 33;
        x *= 0xFF51AFD7ED558CCDUL;
        x ^= x >> 33;
        x *= 0xC4CEB9FE1A85EC53UL;
        x ^= x >> 33;
        return x;
    }
}
