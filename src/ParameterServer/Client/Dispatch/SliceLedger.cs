using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using ParameterServer.Client.Routing;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns the slices in flight (by request id, with their deadlines), the slice pool and the lock over
// both. A slice leaves the ledger exactly once (answer, timeout, lost link, failed send, direct receive); whoever takes
// it completes it. Recycling returns the slice's rented buffers; a slice still being sent is recycled by its sender.

/// <summary>The slices a worker has sent and not yet had answered, and the pool they come from.</summary>
internal sealed class SliceLedger
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, Slice> _inflight = new();
    private readonly Stack<Slice> _pool = new();

    public Slice Rent()
    {
        lock (_lock)
        {
            return _pool.Count > 0 ? _pool.Pop() : new Slice();
        }
    }

    /// <summary>For the stall diagnosis: the slices awaiting answers, by server, with the view they were cut by and the nearest deadline.</summary>
    public string DescribeInFlight()
    {
        long now = Environment.TickCount64;
        lock (_lock)
        {
            if (_inflight.Count == 0)
            {
                return "no slice awaits an answer";
            }
            return string.Join("; ", _inflight.Values.GroupBy(s => s.Link.Server.Describe()).Select(g =>
                $"{g.Count()} slices await {g.Key} (views {g.Min(s => s.ViewNumber)}-{g.Max(s => s.ViewNumber)}, {(g.Any(s => s.Link.Connection.IsClosed) ? "link closed, " : "")}first deadline in {(g.Min(s => s.Deadline) - now) / 1000.0:0.0} s)"));
        }
    }

    /// <summary>Enters slices about to be sent: each may now be answered, timed out or lost; its frame stays its sender's until sent.</summary>
    public void Track(ReadOnlySpan<Slice> slices, long deadline)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            foreach (var slice in slices)
            {
                slice.SentAt = now;
                slice.Deadline = deadline;
                slice.SendState = Slice.SendInProgress; // its frame stays ours until sent, even if the call fails meanwhile
                _inflight[slice.RequestId] = slice;
            }
        }
    }

    /// <summary>Lists a resent slice's pieces with their operation (the old slice stays listed: recycled with it) and enters them.</summary>
    public void TrackPieces(Operation op, Slice[] pieces, long deadline)
    {
        lock (_lock)
        {
            op.Slices.AddRange(pieces);
            long now = Stopwatch.GetTimestamp();
            foreach (var slice in pieces)
            {
                slice.SentAt = now;
                slice.Deadline = deadline;
                slice.SendState = Slice.SendInProgress;
                _inflight[slice.RequestId] = slice;
            }
        }
    }

    /// <summary>Enters a slice again, as it is (sent again on the same link).</summary>
    public void Retrack(Slice slice)
    {
        slice.SentAt = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            _inflight[slice.RequestId] = slice;
        }
    }

    /// <summary>
    /// For hang reports: describes the slices in flight longer than <paramref name="olderThan"/> (the oldest
    /// <paramref name="max"/>) into <paramref name="slow"/>, and those that crossed it since the last call into
    /// <paramref name="newlySlow"/> (each slice once), for the log.
    /// </summary>
    public void DescribeSlow(TimeSpan olderThan, int max, List<string> slow, List<string>? newlySlow)
    {
        long now = Stopwatch.GetTimestamp();
        long limit = now - (long)(olderThan.TotalSeconds * Stopwatch.Frequency);
        List<Slice>? found = null;
        lock (_lock)
        {
            foreach (var slice in _inflight.Values)
            {
                if (slice.SentAt != 0 && slice.SentAt < limit)
                {
                    (found ??= new()).Add(slice);
                }
            }
            if (found is null)
            {
                return;
            }
            found.Sort((a, b) => a.SentAt.CompareTo(b.SentAt));
            for (int i = 0; i < found.Count; i++)
            {
                var s = found[i];
                bool first = newlySlow is not null && !s.ReportedSlow;
                if (i >= max && !first)
                {
                    continue;
                }
                double waited = (now - s.SentAt) / (double)Stopwatch.Frequency;
                string text = string.Create(CultureInfo.InvariantCulture,
                    $"{s.Op.Kind.ToString().ToLowerInvariant()} #{s.Op.Timestamp} on table '{s.Op.Table.Name}' ({s.Count} keys{(s.Resent ? ", resent" : "")}) has waited {waited:0.0} s for {s.Link.Server.Describe()} (view {s.ViewNumber}{(s.Link.Connection.IsClosed ? ", link closed" : "")})");
                if (i < max)
                {
                    slow.Add(text);
                }
                if (first)
                {
                    s.ReportedSlow = true;
                    newlySlow!.Add(text);
                }
            }
        }
    }

    /// <summary>Takes the slice answered (or failed) by this request id; null when it was taken already.</summary>
    public Slice? Take(ulong requestId)
    {
        lock (_lock)
        {
            return _inflight.Remove(requestId, out var slice) ? slice : null;
        }
    }

    /// <summary>
    /// Takes the pull that a large plain answer can be received straight into: one contiguous run of the caller's
    /// destination of exactly the answer's size. False leaves it in flight.
    /// </summary>
    public bool TryTakeDirect(in FrameHeader header, out Slice slice)
    {
        lock (_lock)
        {
            if (!_inflight.TryGetValue(header.RequestId, out slice!) || slice.Op.Kind == MessageType.Push || slice.Positions is not null
                || header.KeyCount != slice.Count || header.PayloadLength != (long)slice.Count * slice.Op.Table.Width * sizeof(float))
            {
                return false;
            }
            _inflight.Remove(header.RequestId);
            return true;
        }
    }

    /// <summary>Takes every slice in flight on a link (it closed).</summary>
    public List<Slice> TakeAllOn(ServerLink link)
    {
        List<Slice> lost = new();
        lock (_lock)
        {
            foreach (var (_, slice) in _inflight)
            {
                if (slice.Link == link)
                {
                    lost.Add(slice);
                }
            }
            foreach (var slice in lost)
            {
                _inflight.Remove(slice.RequestId);
            }
        }
        return lost;
    }

    /// <summary>Takes every slice in flight past its deadline into <paramref name="expired"/>.</summary>
    public void TakeExpired(long now, List<Slice> expired)
    {
        lock (_lock)
        {
            foreach (var (_, slice) in _inflight)
            {
                if (slice.Deadline < now)
                {
                    expired.Add(slice);
                }
            }
            foreach (var slice in expired)
            {
                _inflight.Remove(slice.RequestId);
            }
        }
    }

    /// <summary>Returns an operation's slices to the pool (those still being sent are recycled by their sender) and clears its list.</summary>
    public void Release(Operation op)
    {
        lock (_lock)
        {
            foreach (var slice in op.Slices)
            {
                if (Interlocked.CompareExchange(ref slice.SendState, Slice.SendReleased, Slice.SendInProgress) != Slice.SendInProgress)
                {
                    Recycle(slice);
                }
            }
            op.Slices.Clear();
        }
    }

    /// <summary>Returns slices that were cut but never entered (a resend that failed to cut) and clears the list.</summary>
    public void Discard(List<Slice> slices)
    {
        lock (_lock)
        {
            foreach (var slice in slices)
            {
                Recycle(slice);
            }
        }
        slices.Clear();
    }

    /// <summary>The sender is done with a slice's frame: if its call completed meanwhile, the slice is recycled now.</summary>
    public void EndSend(Slice slice)
    {
        if (Interlocked.CompareExchange(ref slice.SendState, Slice.SendIdle, Slice.SendInProgress) == Slice.SendReleased)
        {
            lock (_lock)
            {
                Recycle(slice); // the call completed (failed) while its frame was being sent
            }
        }
    }

    /// <summary>Returns a slice's buffers and the slice to their pools. Under <see cref="_lock"/>.</summary>
    private void Recycle(Slice slice)
    {
        if (slice.Frame.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(slice.Frame);
        }
        if (slice.Positions is not null)
        {
            ArrayPool<int>.Shared.Return(slice.Positions);
        }
        if (Interlocked.Exchange(ref slice.Wire, null) is { } wire)
        {
            ArrayPool<byte>.Shared.Return(wire);
        }
        slice.WireSignature = null;
        slice.Frame = [];
        slice.Positions = null;
        slice.Op = null!;
        slice.Link = null!;
        slice.PredecessorId = 0;
        slice.PredecessorView = 0;
        slice.Resent = false;
        slice.LostWithServer = false;
        slice.ReportedSlow = false;
        slice.RetryAt = 0;
        slice.ValueStart = -1;
        slice.SendState = Slice.SendIdle;
        _pool.Push(slice);
    }
}
