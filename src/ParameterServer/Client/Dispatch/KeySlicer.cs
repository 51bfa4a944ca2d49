using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch (the first step of sending a call: it fills the call's own slices, so it lives with them; it uses the
// view's placement from Core.Cluster, not the routes). Owns nothing: static and allocation free.

/// <summary>Where a <see cref="KeySlicer"/> gets pooled slices and request ids (the dispatcher; a stub in tests and benchmarks).</summary>
internal interface ISliceSource
{
    Slice RentSlice();

    ulong NextRequestId();
}

/// <summary>What one call sends: the placement to cut by, the operation and the header every frame starts from.</summary>
internal readonly record struct SliceRequest(
    ClusterView View,
    TablePlacement Placement,
    int Width,
    bool EveryServer,
    bool DeferLargeValues,
    int MaxFrameBytes,
    FrameHeader Header);

/// <summary>
/// Cuts a call's sorted keys by owning server into one frame per server, and merges answers back in key order.
/// Contiguous runs are copied wholesale and consecutive keys sent as a [first, count] range; keys of one server
/// that interleave with others' (sparse tables) are placed one by one and remembered for the scatter. Allocation free.
/// </summary>
internal static class KeySlicer
{
    private const int StackKeys = 256; // slot scratch for calls up to this many keys lives on the stack

    /// <summary>Appends one slice per server owning some of <paramref name="keys"/> (every server with EveryServer) to op.Slices.</summary>
    public static void Slice(in SliceRequest request, Operation op, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, ISliceSource source)
    {
        int servers = request.Placement.ServerCount;
        int n = keys.Length;
        int[]? rentedSlots = null;
        Span<int> slotOf = n <= StackKeys ? stackalloc int[StackKeys] : (rentedSlots = ArrayPool<int>.Shared.Rent(n));
        try
        {
            bool oneServer = n > 0;
            for (int i = 0; i < n; i++)
            {
                int s = request.Placement.SlotOf(keys[i]);
                slotOf[i] = s;
                oneServer &= s == slotOf[0];
            }
            if (oneServer && (!request.EveryServer || servers == 1))
            {
                // The common case: every key on one server, one contiguous slice, no per-server bookkeeping.
                op.Slices.Add(Build(request, op, slotOf[0], keys, values, 0, n, contiguous: true, source));
                return;
            }
            SliceMany(request, op, keys, values, slotOf[..n], source);
        }
        finally
        {
            if (rentedSlots is not null)
            {
                ArrayPool<int>.Shared.Return(rentedSlots);
            }
        }
    }

    private static void SliceMany(in SliceRequest request, Operation op, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, ReadOnlySpan<int> slotOf, ISliceSource source)
    {
        int servers = request.Placement.ServerCount;
        int n = keys.Length;
        int[]? rented = null;
        Span<int> perServer = servers <= 64 ? stackalloc int[4 * 64] : (rented = ArrayPool<int>.Shared.Rent(4 * servers));
        try
        {
            var counts = perServer[..servers];
            var first = perServer.Slice(servers, servers);
            var last = perServer.Slice(2 * servers, servers);
            var sliceOfSlot = perServer.Slice(3 * servers, servers);
            counts.Clear();
            for (int i = 0; i < n; i++)
            {
                int s = slotOf[i];
                if (counts[s]++ == 0)
                {
                    first[s] = i;
                }
                last[s] = i;
            }
            bool scatter = false;
            for (int s = 0; s < servers; s++)
            {
                sliceOfSlot[s] = -1;
                int c = counts[s];
                if (c == 0 && !request.EveryServer)
                {
                    continue;
                }
                bool contiguous = c == 0 || last[s] - first[s] + 1 == c;
                var slice = Build(request, op, s, keys, values, c == 0 ? 0 : first[s], c, contiguous, source);
                scatter |= !contiguous;
                sliceOfSlot[s] = op.Slices.Count;
                op.Slices.Add(slice);
            }
            if (scatter)
            {
                // Keys of one server interleave with others' (sparse tables): place them one by one.
                bool withValues = request.Header.Type != MessageType.Pull;
                int width = request.Width;
                var cursor = counts; // reused as per-server write positions
                cursor.Clear();
                for (int i = 0; i < n; i++)
                {
                    var slice = op.Slices[sliceOfSlot[slotOf[i]]];
                    if (slice.Positions is not { } positions)
                    {
                        continue;
                    }
                    int j = cursor[slice.ServerSlot]++;
                    positions[j] = i;
                    MemoryMarshal.Cast<byte, ulong>(slice.Frame.AsSpan(FrameHeader.Size))[j] = keys[i];
                    if (withValues)
                    {
                        int valueOffset = FrameHeader.Size + (slice.Count * sizeof(ulong));
                        values.Slice(i * width, width).CopyTo(MemoryMarshal.Cast<byte, float>(slice.Frame.AsSpan(valueOffset))[(j * width)..]);
                    }
                }
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<int>.Shared.Return(rented);
            }
        }
    }

    /// <summary>
    /// One server's slice: keys [start, start + count) of the call when <paramref name="contiguous"/>, else a frame with
    /// room for count keys and a position list that the caller fills.
    /// </summary>
    private static Slice Build(in SliceRequest request, Operation op, int slot, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values,
        int start, int count, bool contiguous, ISliceSource source)
    {
        var kind = request.Header.Type;
        int width = request.Width;
        bool withValues = kind != MessageType.Pull;
        bool keyRange = contiguous && count > 1 && keys[start + count - 1] - keys[start] == (ulong)(count - 1);
        long keyBytes = DataPayload.KeySectionBytes(count, keyRange);
        long valueBytes = withValues ? (long)count * width * sizeof(float) : 0;
        long frameLength = FrameHeader.Size + keyBytes + valueBytes;
        long answerLength = FrameHeader.Size + (kind == MessageType.Push ? 0 : (long)count * width * sizeof(float));
        if (Math.Max(frameLength, answerLength) > request.MaxFrameBytes)
        {
            throw new PsException(PsErrorCode.InvalidArgument,
                $"the part of this call for {request.View.Servers[slot].Describe()} needs a {Math.Max(frameLength, answerLength)}-byte frame, over MaxFrameBytes ({request.MaxFrameBytes}); split the call");
        }
        var slice = source.RentSlice();
        slice.Op = op;
        slice.ServerSlot = slot;
        slice.RequestId = source.NextRequestId();
        slice.Count = count;
        slice.Start = start;
        slice.FrameLength = (int)frameLength;
        slice.HeadLength = FrameHeader.Size + (int)keyBytes;
        slice.ValueStart = -1;
        slice.ValueCount = withValues ? count * width : 0;
        slice.Frame = ArrayPool<byte>.Shared.Rent(slice.FrameLength);
        var header = request.Header;
        header.Flags = request.Header.Flags | (keyRange ? FrameFlags.KeyRange : FrameFlags.None); // the call's flags, and this frame's key form
        header.PayloadLength = (int)(keyBytes + valueBytes);
        header.RequestId = slice.RequestId;
        header.KeyCount = count;
        header.RowWidth = width;
        header.Write(slice.Frame);
        var keySection = slice.Frame.AsSpan(FrameHeader.Size, (int)keyBytes);
        if (keyRange)
        {
            var pair = MemoryMarshal.Cast<byte, ulong>(keySection);
            pair[0] = keys[start];
            pair[1] = (ulong)count;
        }
        if (!contiguous)
        {
            slice.Positions = ArrayPool<int>.Shared.Rent(count);
            return slice;
        }
        if (!keyRange && count > 0)
        {
            keys.Slice(start, count).CopyTo(MemoryMarshal.Cast<byte, ulong>(keySection));
        }
        if (withValues && count > 0)
        {
            if (request.DeferLargeValues && valueBytes >= Connection.LargeFrameBytes)
            {
                slice.ValueStart = start * width; // sent from the caller's values when the call is dispatched
            }
            else
            {
                values.Slice(start * width, count * width).CopyTo(MemoryMarshal.Cast<byte, float>(slice.Frame.AsSpan(slice.HeadLength, (int)valueBytes)));
            }
        }
        return slice;
    }

    /// <summary>Puts one server's answer rows where its keys were in the call.</summary>
    public static void Scatter(Slice slice, ReadOnlySpan<float> values, Span<float> destination, int width)
    {
        if (slice.Positions is not { } positions)
        {
            values.CopyTo(destination.Slice(slice.Start * width, slice.Count * width));
            return;
        }
        if (width == 1)
        {
            for (int j = 0; j < slice.Count; j++)
            {
                destination[positions[j]] = values[j];
            }
            return;
        }
        for (int j = 0; j < slice.Count; j++)
        {
            values.Slice(j * width, width).CopyTo(destination.Slice(positions[j] * width, width));
        }
    }
}
