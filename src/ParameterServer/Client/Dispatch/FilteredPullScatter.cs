using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Client.Routing;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns nothing of its own: the row memory it fills and reads is the link's (ServerLink.PulledRows),
// since it mirrors what the server remembers of that connection and lives and dies with it.

/// <summary>Takes in filtered pull answers: rows carried are remembered, rows left out are filled from memory.</summary>
internal static class FilteredPullScatter
{
    /// <summary>
    /// Takes in a filtered pull answer (<see cref="FrameFlags.FilterAnswer"/>): the rows it carries are remembered for
    /// this connection, the rows it leaves out are filled from what was remembered. <paramref name="lacking"/> when a
    /// left-out row is not held here (then nothing is scattered and the caller asks again for every row).
    /// </summary>
    public static PsException? Scatter(ServerLink link, Slice slice, in FrameHeader header, ReadOnlySpan<byte> payload, int width, long memoryBytes, out bool lacking)
    {
        lacking = false;
        int count = slice.Count;
        var memory = link.PulledRows(header.TableId, width, memoryBytes);
        int maskBytes = 8 + ((count + 63) / 64 * 8);
        string? problem = null;
        int present = 0;
        ReadOnlySpan<ulong> bitmap = default;
        if (header.KeyCount != count || payload.Length < maskBytes)
        {
            problem = $"answered {header.KeyCount} rows in {payload.Length} bytes to a filtered pull of {count} rows";
        }
        else
        {
            present = MemoryMarshal.Read<int>(payload);
            bitmap = MemoryMarshal.Cast<byte, ulong>(payload[8..maskBytes]);
            int marked = 0;
            foreach (ulong word in bitmap)
            {
                marked += System.Numerics.BitOperations.PopCount(word);
            }
            if (present != marked || (count % 64 != 0 && bitmap[^1] >> (count % 64) != 0))
            {
                problem = $"sent a filtered answer that says {present} of its {count} rows are present; its bitmap marks {marked} (or rows past the end)";
                present = 0;
            }
        }
        var rows = ArrayPool<float>.Shared.Rent(Math.Max(1, present * width));
        var full = ArrayPool<float>.Shared.Rent(Math.Max(1, count * width));
        try
        {
            var carried = rows.AsSpan(0, present * width);
            problem ??= ReadFilteredValues(header, payload[maskBytes..], width, carried);
            if (problem is not null)
            {
                link.ForgetPulledRows(header.TableId);
                return new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} {problem}");
            }
            slice.TryReadHeader(out var sent);
            bool range = (sent.Flags & FrameFlags.KeyRange) != 0;
            var keyList = range ? default : MemoryMarshal.Cast<byte, ulong>(slice.Frame.AsSpan(FrameHeader.Size, count * sizeof(ulong)));
            ulong first = range ? MemoryMarshal.Read<ulong>(slice.Frame.AsSpan(FrameHeader.Size)) : 0;
            var filled = full.AsSpan(0, count * width);
            lock (memory)
            {
                int next = 0;
                for (int j = 0; j < count; j++)
                {
                    ulong key = range ? first + (ulong)j : keyList[j];
                    var target = filled.Slice(j * width, width);
                    if ((bitmap[j >> 6] & (1UL << (j & 63))) != 0)
                    {
                        var row = carried.Slice(next * width, width);
                        next++;
                        memory.Set(key, row);
                        row.CopyTo(target);
                    }
                    else if (memory.TryGet(key, out var held))
                    {
                        held.CopyTo(target);
                    }
                    else
                    {
                        lacking = true;
                    }
                }
            }
            if (lacking)
            {
                return new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} left rows out of a filtered pull answer that this worker does not hold");
            }
            KeySlicer.Scatter(slice, filled, slice.Op.Destination.Span, width);
            return null;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
            ArrayPool<float>.Shared.Return(full);
        }
    }

    /// <summary>The carried rows of a filtered answer into <paramref name="carried"/>; what is wrong, or null.</summary>
    private static string? ReadFilteredValues(in FrameHeader header, ReadOnlySpan<byte> values, int width, Span<float> carried)
    {
        if ((header.Flags & FrameFlags.Compressed) != 0)
        {
            try
            {
                ValueCodec.Decode(values, width, carried);
                return null;
            }
            catch (ProtocolException ex)
            {
                return $"sent a filtered answer that does not decode: {ex.Message}";
            }
        }
        if (values.Length < carried.Length * sizeof(float))
        {
            return $"sent a filtered answer of {values.Length} value bytes for {carried.Length / width} rows of width {width}";
        }
        MemoryMarshal.Cast<byte, float>(values[..(carried.Length * sizeof(float))]).CopyTo(carried);
        return null;
    }
}
