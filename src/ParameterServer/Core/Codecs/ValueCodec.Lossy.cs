using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace ParameterServer.Core.Codecs;

/// <summary>The lossy gradient encodings: top-k (the largest entries with their indices) and 1-bit (signs and two means).</summary>
internal static partial class ValueCodec
{
    private static int EncodeTopK(ReadOnlySpan<float> values, float fraction, Span<byte> destination)
    {
        int n = values.Length;
        int k = n == 0 ? 0 : Math.Clamp((int)MathF.Ceiling(n * fraction), 1, n);
        // The k-th largest magnitude by selection on a pooled copy, then the entries at or above it in index order.
        float[] magnitudes = ArrayPool<float>.Shared.Rent(Math.Max(1, n));
        try
        {
            for (int i = 0; i < n; i++)
            {
                magnitudes[i] = MathF.Abs(values[i]);
            }
            float threshold = k == 0 ? float.PositiveInfinity : Select(magnitudes.AsSpan(0, n), n - k);
            var indices = MemoryMarshal.Cast<byte, int>(destination.Slice(4, k * 4));
            var kept = MemoryMarshal.Cast<byte, float>(destination.Slice(4 + (k * 4), k * 4));
            int taken = 0;
            for (int i = 0; i < n && taken < k; i++)
            {
                if (MathF.Abs(values[i]) > threshold)
                {
                    indices[taken] = i;
                    kept[taken++] = values[i];
                }
            }
            for (int i = 0; i < n && taken < k; i++)
            {
                if (MathF.Abs(values[i]) == threshold)
                {
                    indices[taken] = i;
                    kept[taken++] = values[i];
                }
            }
            // Ties at the threshold were added after the larger ones: restore index order for the reader's sake.
            SortByIndex(indices[..taken], kept[..taken]);
            BinaryPrimitives.WriteInt32LittleEndian(destination, taken);
            if (taken < k)
            {
                kept[..taken].CopyTo(MemoryMarshal.Cast<byte, float>(destination.Slice(4 + (taken * 4), taken * 4)));
            }
            return 4 + (taken * 8);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(magnitudes);
        }
    }

    private static void SortByIndex(Span<int> indices, Span<float> values)
    {
        for (int i = 1; i < indices.Length; i++)
        {
            if (indices[i] < indices[i - 1])
            {
                indices.Sort(values);
                return;
            }
        }
    }

    /// <summary>The element that would be at <paramref name="rank"/> if <paramref name="items"/> were sorted (Hoare's selection; reorders items).</summary>
    private static float Select(Span<float> items, int rank)
    {
        int lo = 0;
        int hi = items.Length - 1;
        while (lo < hi)
        {
            float pivot = items[(lo + hi) >>> 1];
            int i = lo;
            int j = hi;
            while (i <= j)
            {
                while (items[i] < pivot)
                {
                    i++;
                }
                while (items[j] > pivot)
                {
                    j--;
                }
                if (i <= j)
                {
                    (items[i], items[j]) = (items[j], items[i]);
                    i++;
                    j--;
                }
            }
            if (rank <= j)
            {
                hi = j;
            }
            else if (rank >= i)
            {
                lo = i;
            }
            else
            {
                return items[rank];
            }
        }
        return items[rank];
    }

    private static int EncodeOneBit(ReadOnlySpan<float> values, Span<byte> destination)
    {
        int n = values.Length;
        double positiveSum = 0;
        double negativeSum = 0;
        int positives = 0;
        var signs = destination.Slice(8, (n + 7) / 8);
        signs.Clear();
        for (int i = 0; i < n; i++)
        {
            if (values[i] >= 0)
            {
                positiveSum += values[i];
                positives++;
                signs[i >> 3] |= (byte)(1 << (i & 7));
            }
            else
            {
                negativeSum += values[i];
            }
        }
        BinaryPrimitives.WriteSingleLittleEndian(destination, positives == 0 ? 0f : (float)(positiveSum / positives));
        BinaryPrimitives.WriteSingleLittleEndian(destination[4..], positives == n ? 0f : (float)(negativeSum / (n - positives)));
        return 8 + Pad4((n + 7) / 8);
    }
}
