using System.Buffers;
using ParameterServer.Client.Dispatch;
using ParameterServer.Extensions;
using ParameterServer.Protocol;

namespace ParameterServer.Client.PushFilters;

// Room: PushFilters. Owns the count of keys push filters kept from being sent. The filters themselves are the table's
// (TableState.PushFilter, set through PsTable); this stage runs one on a push and hands what is kept to the
// dispatcher. Uses: Dispatch (one way: the dispatcher does not know this stage; the host routes filtered tables here).

/// <summary>Runs a table's push filter on a push before it is sent.</summary>
internal sealed class PushFilterStage(Dispatcher dispatcher)
{
    private long _filteredKeys;

    /// <summary>Keys that push filters kept from being sent.</summary>
    public long FilteredKeys => Interlocked.Read(ref _filteredKeys);

    /// <summary>
    /// A push through the table's filter. The kept entries go out as an ordinary (smaller) push; when the table encodes
    /// its frames, each server's part is cut from the unfiltered keys and then compacted, so its wire form can name the
    /// unfiltered key list by its cached signature plus a bitmap of the kept rows (<see cref="FrameFlags.Masked"/>).
    /// </summary>
    public long Submit(TableState table, IPushFilter filter, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, ReadOnlySpan<long> after)
    {
        int n = keys.Length;
        int width = table.Width;
        var keptKeys = ArrayPool<ulong>.Shared.Rent(n);
        var keptValues = ArrayPool<float>.Shared.Rent(n * width);
        var keep = ArrayPool<bool>.Shared.Rent(n);
        try
        {
            var copy = keptValues.AsSpan(0, n * width);
            values.CopyTo(copy);
            var flags = keep.AsSpan(0, n);
            flags.Fill(true);
            filter.Filter(keys, copy, width, flags);
            if (table.Traffic is not null && flags.Contains(true))
            {
                Interlocked.Add(ref _filteredKeys, flags.Count(false));
                return dispatcher.Submit(table, MessageType.Push, keys, copy, default, after, kept: flags);
            }
            int kept = 0;
            for (int i = 0; i < n; i++)
            {
                if (!flags[i])
                {
                    continue;
                }
                keptKeys[kept] = keys[i];
                if (kept != i)
                {
                    copy.Slice(i * width, width).CopyTo(copy[(kept * width)..]);
                }
                kept++;
            }
            Interlocked.Add(ref _filteredKeys, n - kept);
            return dispatcher.Submit(table, MessageType.Push, keptKeys.AsSpan(0, kept), copy[..(kept * width)], default, after);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(keptKeys);
            ArrayPool<float>.Shared.Return(keptValues);
            ArrayPool<bool>.Shared.Return(keep);
        }
    }
}
