using System.Buffers.Binary;
using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using ParameterServer.Core.Codecs;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

// The data path: slicing calls per server, sending, matching responses, completing timestamps.
// Steady state allocates nothing: operations and slices are pooled, frames and position lists rented.
public sealed partial class PsClient
{
    internal long Submit(PsTable table, MessageType kind, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after,
        bool filtered = false, ReadOnlySpan<bool> kept = default)
    {
        Validate(table, kind, keys, values, destination, after);
        if (!filtered && kind == MessageType.Push && table.PushFilter is { } filter && keys.Length > 0)
        {
            return SubmitFiltered(table, filter, keys, values, after);
        }
        bool pushes = kind != MessageType.Pull;
        Operation op;
        long round = 0;
        Routing routes;
        lock (_gate)
        {
            ThrowIfShutDown();
            // Bounded delay: call k on this table starts only when calls <= k - tau - 1 have completed.
            long deadline = Environment.TickCount64 + (long)WaitTimeout.TotalMilliseconds;
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            while (table.Window.InFlight > table.Tau)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout,
                        $"a call on table '{table.Name}' waited {WaitTimeout.TotalSeconds:0.#} s for call #{table.Window.OldestIncomplete} of that table to complete ({table.Consistency})");
                }
                Monitor.Wait(_gate, (int)left);
                ThrowIfShutDown();
            }
            AddWaitTime(started);
            op = _operationPool.Count > 0 ? _operationPool.Pop() : new Operation();
            op.Timestamp = _clock.Take();
            op.TableSeq = table.Window.Take();
            op.Table = table;
            op.Kind = kind;
            op.Destination = destination;
            Observer?.OnIssued(op.Timestamp);
            if (pushes)
            {
                round = table.NextRound++;
            }
            // Taken with the round: routes switch under this lock too, so a new server learns exactly which rounds
            // were cut without it (see AnnounceRounds).
            routes = _routes;
            foreach (long t in after)
            {
                op.After.Add(t);
            }
        }
        long timestamp = op.Timestamp;
        // Without dependencies the call is sent before this method returns: large value sections can then go to the
        // socket straight from the caller's memory instead of through the frame.
        bool inline = op.After.Count == 0;
        try
        {
            // Under replication a slice may be sent again to a new primary, so its frame must hold its values.
            BuildSlices(op, routes, keys, pushes ? values : default, round, deferLargeValues: inline && routes != Routing.None && routes.View.ChainLength <= 1 && table.Traffic is null);
            if (kind == MessageType.Pull && table.Info.FiltersPulls)
            {
                foreach (var slice in op.Slices)
                {
                    var flags = (FrameFlags)BinaryPrimitives.ReadUInt16LittleEndian(slice.Frame.AsSpan(4));
                    BinaryPrimitives.WriteUInt16LittleEndian(slice.Frame.AsSpan(4), (ushort)(flags | FrameFlags.FilterAnswer));
                }
            }
            if (table.Traffic is { } traffic)
            {
                foreach (var slice in op.Slices)
                {
                    SliceEncoding.Encode(slice, traffic, kind, table.Info.Id, table.Width, kept);
                }
            }
        }
        catch (Exception ex)
        {
            op.Error = ex as PsException ?? new PsException(PsErrorCode.InvalidArgument, ex.Message, ex);
            ReleaseSlices(op);
            FinishOperation(op);
            throw;
        }
        if (op.After.Count > 0)
        {
            lock (_gate)
            {
                if (!DependenciesDone(op))
                {
                    _parked.Add(op);
                    return timestamp;
                }
            }
        }
        Dispatch(op, pushes ? values : default);
        return timestamp;
    }

    /// <summary>
    /// A push through the table's filter. The kept entries go out as an ordinary (smaller) push; when the table encodes
    /// its frames, each server's part is cut from the unfiltered keys and then compacted, so its wire form can name the
    /// unfiltered key list by its cached signature plus a bitmap of the kept rows (<see cref="FrameFlags.Masked"/>).
    /// </summary>
    private long SubmitFiltered(PsTable table, IPushFilter filter, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, ReadOnlySpan<long> after)
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
                return Submit(table, MessageType.Push, keys, copy, default, after, filtered: true, kept: flags);
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
            return Submit(table, MessageType.Push, keptKeys.AsSpan(0, kept), copy[..(kept * width)], default, after, filtered: true);
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(keptKeys);
            ArrayPool<float>.Shared.Return(keptValues);
            ArrayPool<bool>.Shared.Return(keep);
        }
    }

    private long _filteredKeys;

    /// <summary>Keys that push filters kept from being sent.</summary>
    internal long FilteredKeys => Interlocked.Read(ref _filteredKeys);

    /// <summary>Forgets the rows of filtered pull answers held for a table (tests: left-out rows must then be asked for again).</summary>
    internal void ForgetPulledRows(int tableId)
    {
        lock (_everyLink)
        {
            foreach (var link in _everyLink)
            {
                link.ForgetPulledRows(tableId);
            }
        }
    }

    private void Validate(PsTable table, MessageType kind, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after)
    {
        int width = table.Width;
        for (int i = 1; i < keys.Length; i++)
        {
            if (keys[i] <= keys[i - 1])
            {
                throw new ArgumentException($"keys must be sorted ascending without duplicates: keys[{i}] = {keys[i]} follows keys[{i - 1}] = {keys[i - 1]}", nameof(keys));
            }
        }
        if (table.Info.IsDense && keys.Length > 0 && keys[^1] >= table.Info.DenseSize)
        {
            throw new ArgumentOutOfRangeException(nameof(keys), keys[^1], $"key is outside dense table '{table.Name}' of size {table.Info.DenseSize}");
        }
        if (kind != MessageType.Pull && values.Length != (long)keys.Length * width)
        {
            throw new ArgumentException($"table '{table.Name}' has width {width}: {keys.Length} keys need {(long)keys.Length * width} values, got {values.Length}", nameof(values));
        }
        if (kind != MessageType.Push && destination.Length < (long)keys.Length * width)
        {
            throw new ArgumentException($"table '{table.Name}' has width {width}: {keys.Length} keys need room for {(long)keys.Length * width} values, the destination holds {destination.Length}", nameof(destination));
        }
        foreach (long t in after)
        {
            if (t < 0 || t >= _clock.Next)
            {
                throw new ArgumentOutOfRangeException(nameof(after), t, "a dependency must be the timestamp of an earlier call");
            }
        }
    }

    /// <summary>Cuts the keys by owning server, one frame each (<see cref="KeySlicer"/>).</summary>
    private void BuildSlices(Operation op, Routing routes, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, long round, bool deferLargeValues)
    {
        if (routes == Routing.None)
        {
            throw new InvalidOperationException("not connected");
        }
        var view = routes.View;
        var table = op.Table;
        var request = new SliceRequest(
            view,
            view.PlacementOf(table.Info),
            table.Width,
            EveryServer: op.Kind != MessageType.Pull && table.Info.Mode == UpdateMode.Sync, // every server counts every worker's round
            deferLargeValues,
            _options.Transport.MaxFrameBytes,
            new FrameHeader
            {
                Type = op.Kind,
                SenderId = NodeId,
                Timestamp = op.Timestamp,
                ViewNumber = view.Number,
                TableId = table.Info.Id,
                ElementType = WireElementType.Float32,
                Round = round,
            });
        KeySlicer.Slice(request, op, keys, values, this);
        foreach (var slice in op.Slices)
        {
            slice.Link = routes.BySlot[slice.ServerSlot];
            slice.ViewNumber = view.Number;
        }
        op.PendingSlices = op.Slices.Count;
    }

    Slice ISliceSource.RentSlice() => RentSlice();

    ulong ISliceSource.NextRequestId() => NextRequestId();

    private Slice RentSlice()
    {
        lock (_sliceLock)
        {
            return _slicePool.Count > 0 ? _slicePool.Pop() : new Slice();
        }
    }

    private bool DependenciesDone(Operation op)
    {
        foreach (long t in op.After)
        {
            if (!_clock.IsDone(t))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Sends every slice of an operation whose dependencies are met (or fails it if one of them failed).
    /// <paramref name="values"/> are the caller's values when it is still in the call (slices may send from them).
    /// </summary>
    private void Dispatch(Operation op, ReadOnlySpan<float> values = default)
    {
        foreach (long t in op.After)
        {
            PsException? failed;
            lock (_gate)
            {
                _failures.TryGetValue(t, out failed);
            }
            if (failed is not null)
            {
                op.Error = new PsException(PsErrorCode.DependencyFailed, $"call {op.Timestamp} depends on call {t}, which failed: {failed.Message}", failed);
                ReleaseSlices(op);
                FinishOperation(op);
                return;
            }
        }
        if (op.Slices.Count == 0)
        {
            FinishOperation(op);
            return;
        }
        long deadline = Environment.TickCount64 + (long)_options.RequestTimeout.TotalMilliseconds;
        // Copy the list: a fast response may complete and recycle the operation while we are still sending.
        int count = op.Slices.Count;
        var rented = ArrayPool<Slice>.Shared.Rent(count);
        var slices = rented.AsSpan(0, count);
        op.Slices.CopyTo(rented);
        lock (_sliceLock)
        {
            foreach (var slice in slices)
            {
                slice.Deadline = deadline;
                slice.SendState = Slice.SendInProgress; // its frame stays ours until sent, even if the call fails meanwhile
                _inflight[slice.RequestId] = slice;
            }
        }
        try
        {
            SendSlices(slices, values, AnswersPromptly(op.Table.Info.Id));
        }
        finally
        {
            slices.Clear();
            ArrayPool<Slice>.Shared.Return(rented);
        }
    }

    /// <summary>Sends the slices; <paramref name="prompt"/>: the servers answer them on arrival (counted for send batching).</summary>
    private void SendSlices(ReadOnlySpan<Slice> slices, ReadOnlySpan<float> values, bool prompt)
    {
        foreach (var slice in slices)
        {
            var link = slice.Link;
            try
            {
                if (prompt)
                {
                    link.Connection.ExpectAnswer(); // answered on arrival, even if only with an error
                }
                if (slice.ValueStart >= 0)
                {
                    SendWithCallerValues(link.Connection, slice, MemoryMarshal.AsBytes(values.Slice(slice.ValueStart, slice.ValueCount)));
                }
                else if (Interlocked.Exchange(ref slice.Wire, null) is { } wire)
                {
                    try
                    {
                        link.Connection.SendFrame(wire, slice.WireLength); // sent once: a resend uses the plain frame
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(wire);
                    }
                }
                else
                {
                    link.Connection.SendFrame(slice.Frame, slice.FrameLength); // large frames go out from slice.Frame itself
                }
            }
            catch (TransportException ex)
            {
                if (TakeInflight(slice.RequestId) is { } taken && !TryFailOver(taken, retryAt: 0, mayBeApplied: true))
                {
                    CompleteSlice(taken, new PsException(PsErrorCode.ConnectionLost, $"cannot send to {link.Server.Describe()}: {ex.Message}", ex));
                }
            }
            finally
            {
                if (Interlocked.CompareExchange(ref slice.SendState, Slice.SendIdle, Slice.SendInProgress) == Slice.SendReleased)
                {
                    lock (_sliceLock)
                    {
                        Recycle(slice); // the call completed (failed) while its frame was being sent
                    }
                }
            }
        }
    }

    /// <summary>The frame's head, then the values from the caller's memory; when another thread is sending, the frame is completed and queued.</summary>
    private static void SendWithCallerValues(Connection connection, Slice slice, ReadOnlySpan<byte> values)
    {
        if (connection.TryBeginExclusiveSend())
        {
            try
            {
                connection.SendExclusive(slice.Frame.AsSpan(0, slice.HeadLength), more: true);
                connection.SendExclusive(values);
                connection.CountSent(slice.Op.Kind, slice.FrameLength);
            }
            finally
            {
                connection.EndExclusiveSend();
            }
            return;
        }
        values.CopyTo(slice.Frame.AsSpan(slice.HeadLength));
        slice.ValueStart = -1;
        connection.SendFrame(slice.Frame.AsSpan(0, slice.FrameLength));
    }

    private Slice? TakeInflight(ulong requestId)
    {
        lock (_sliceLock)
        {
            return _inflight.Remove(requestId, out var slice) ? slice : null;
        }
    }

    internal void OnResponse(ServerLink link, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type != MessageType.Response)
        {
            return;
        }
        t_inReceiveBatch = true;
        var slice = TakeInflight(header.RequestId);
        if (slice is null)
        {
            if ((header.Flags & FrameFlags.FilterAnswer) != 0)
            {
                link.ForgetPulledRows(header.TableId); // its rows are not taken in: what the server remembers is unknown now
            }
            return; // timed out or failed already
        }
        var op = slice.Op;
        PsException? error = null;
        if (header.Error == ErrorCode.WrongOwner && TryFailOver(slice, RetryAfterWrongOwner(slice, header), mayBeApplied: false))
        {
            return; // the views disagree: sent again when they agree
        }
        if (header.Error == ErrorCode.KeyCacheMiss && slice.WireSignature is { } signature)
        {
            // The server does not hold the key list (evicted, or a new connection): send the plain frame, keys and all.
            link.KeyCache.Forget(signature);
            slice.WireSignature = null;
            Interlocked.Increment(ref _keyCacheMisses);
            if (ResendPlain(link, slice))
            {
                return;
            }
        }
        if (header.Error != ErrorCode.None)
        {
            error = new PsException((PsErrorCode)header.Error, $"{link.Server.Describe()} refused {op.Kind.ToString().ToLowerInvariant()} on table '{op.Table.Name}': {Encoding.UTF8.GetString(payload)}");
        }
        else if (op.Kind != MessageType.Push)
        {
            int width = op.Table.Width;
            if ((header.Flags & FrameFlags.FilterAnswer) != 0)
            {
                error = ScatterFiltered(link, slice, header, payload, width, out bool lacking);
                if (lacking && ResendRefresh(link, slice))
                {
                    return;
                }
            }
            else if ((header.Flags & FrameFlags.Compressed) != 0 && header.KeyCount == slice.Count)
            {
                error = ScatterEncoded(link, slice, payload, width);
            }
            else if (header.KeyCount != slice.Count || payload.Length != slice.Count * width * sizeof(float))
            {
                error = new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} answered {header.KeyCount} rows in {payload.Length} bytes to a pull of {slice.Count} rows of width {width}");
            }
            else
            {
                KeySlicer.Scatter(slice, MemoryMarshal.Cast<byte, float>(payload), op.Destination.Span, width);
            }
        }
        CompleteSlice(slice, error);
    }

    private long _keyCacheMisses;

    /// <summary>Answers KeyCacheMiss to this worker's signatures (each followed by a resend with the keys).</summary>
    internal long KeyCacheMisses => Interlocked.Read(ref _keyCacheMisses);

    /// <summary>Sends a slice's plain frame again on the same link (after KeyCacheMiss); false when it could not be sent.</summary>
    private bool ResendPlain(ServerLink link, Slice slice)
    {
        lock (_sliceLock)
        {
            _inflight[slice.RequestId] = slice;
        }
        try
        {
            if (AnswersPromptly(slice.Op.Table.Info.Id))
            {
                link.Connection.ExpectAnswer();
            }
            link.Connection.SendFrame(slice.Frame.AsSpan(0, slice.FrameLength));
            return true;
        }
        catch (TransportException)
        {
            return TakeInflight(slice.RequestId) is null; // the close handler has taken it over; else fail it below
        }
    }

    private long _pullRefreshes;

    /// <summary>Filtered pull answers that left out a row this worker did not hold (each followed by a refresh).</summary>
    internal long PullRefreshes => Interlocked.Read(ref _pullRefreshes);

    /// <summary>Asks again for every row of a filtered pull (Aux 1): an answer left out a row this side does not hold.</summary>
    private bool ResendRefresh(ServerLink link, Slice slice)
    {
        Interlocked.Increment(ref _pullRefreshes);
        BinaryPrimitives.WriteUInt32LittleEndian(slice.Frame.AsSpan(52), 1); // FrameHeader.Aux
        slice.WireSignature = null;
        return ResendPlain(link, slice);
    }

    /// <summary>
    /// Takes in a filtered pull answer (<see cref="FrameFlags.FilterAnswer"/>): the rows it carries are remembered for
    /// this connection, the rows it leaves out are filled from what was remembered. <paramref name="lacking"/> when a
    /// left-out row is not held here (then nothing is scattered and the caller asks again for every row).
    /// </summary>
    private PsException? ScatterFiltered(ServerLink link, Slice slice, in FrameHeader header, ReadOnlySpan<byte> payload, int width, out bool lacking)
    {
        lacking = false;
        int count = slice.Count;
        var memory = link.PulledRows(header.TableId, width, _options.PullFilterBytes);
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
            FrameHeader.TryRead(slice.Frame, int.MaxValue, out var sent, out _);
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

    /// <summary>Decodes an encoded pull answer and scatters it; returns the error if it is malformed.</summary>
    private static PsException? ScatterEncoded(ServerLink link, Slice slice, ReadOnlySpan<byte> payload, int width)
    {
        var rows = ArrayPool<float>.Shared.Rent(Math.Max(1, slice.Count * width));
        try
        {
            ValueCodec.Decode(payload, width, rows.AsSpan(0, slice.Count * width));
            KeySlicer.Scatter(slice, rows.AsSpan(0, slice.Count * width), slice.Op.Destination.Span, width);
            return null;
        }
        catch (ProtocolException ex)
        {
            return new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} sent an answer that does not decode: {ex.Message}");
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
        }
    }

    /// <summary>
    /// A large pull answer whose rows go to one contiguous run of the caller's destination is received straight
    /// into it (no copy through the receive buffer). The slice leaves the in-flight table now, so no timeout can
    /// complete it while its rows are arriving.
    /// </summary>
    internal bool TryBeginDirect(ServerLink link, in FrameHeader header, out Span<byte> target)
    {
        target = default;
        if (header.Type != MessageType.Response || header.Error != ErrorCode.None || (header.Flags & (FrameFlags.Compressed | FrameFlags.FilterAnswer)) != 0)
        {
            return false;
        }
        Slice? slice;
        lock (_sliceLock)
        {
            if (!_inflight.TryGetValue(header.RequestId, out slice) || slice.Op.Kind == MessageType.Push || slice.Positions is not null
                || header.KeyCount != slice.Count || header.PayloadLength != (long)slice.Count * slice.Op.Table.Width * sizeof(float))
            {
                return false;
            }
            _inflight.Remove(header.RequestId);
        }
        int width = slice.Op.Table.Width;
        link.DirectSlice = slice;
        target = MemoryMarshal.AsBytes(slice.Op.Destination.Span.Slice(slice.Start * width, slice.Count * width));
        return true;
    }

    internal void EndDirect(ServerLink link, bool received)
    {
        var slice = link.DirectSlice!;
        link.DirectSlice = null;
        if (!received && TryFailOver(slice, retryAt: 0, mayBeApplied: true))
        {
            return;
        }
        CompleteSlice(slice, received ? null : new PsException(PsErrorCode.ConnectionLost, $"{link.Server.Describe()} closed the connection while answering call {slice.Op.Timestamp}"));
    }

    private void CompleteSlice(Slice slice, PsException? error)
    {
        var op = slice.Op;
        if (slice.Resent && error is null)
        {
            NoteResentAnswered();
        }
        if (error is not null)
        {
            Interlocked.CompareExchange(ref op.Error, error, null);
        }
        if (Interlocked.Decrement(ref op.PendingSlices) == 0)
        {
            ReleaseSlices(op);
            FinishOperation(op);
        }
    }

    private void ReleaseSlices(Operation op)
    {
        lock (_sliceLock)
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

    /// <summary>Returns a slice's buffers and the slice to their pools. Under <see cref="_sliceLock"/>.</summary>
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
        slice.RetryAt = 0;
        slice.ValueStart = -1;
        slice.SendState = Slice.SendIdle;
        _slicePool.Push(slice);
    }

    /// <summary>Marks the operation's timestamp done, wakes waiters and releases operations that depended on it.</summary>
    private void FinishOperation(Operation op)
    {
        List<Operation>? ready = null;
        TaskCompletionSource? waiter;
        var error = op.Error;
        long timestamp = op.Timestamp;
        lock (_gate)
        {
            _clock.Complete(timestamp);
            op.Table.Window.Complete(op.TableSeq);
            if (error is not null)
            {
                _failures[timestamp] = error;
                _log.LogDebugFailure(NodeId, timestamp, error.Message);
            }
            _waiters.Remove(timestamp, out waiter);
            for (int i = _parked.Count - 1; i >= 0; i--)
            {
                if (DependenciesDone(_parked[i]))
                {
                    (ready ??= new List<Operation>()).Add(_parked[i]);
                    _parked.RemoveAt(i);
                }
            }
            op.Reset();
            _operationPool.Push(op);
            if (t_inReceiveBatch)
            {
                t_pulseAtBatchEnd = true; // one wake-up per batch of answers (OnBatchEnd), not one per call
            }
            else
            {
                Monitor.PulseAll(_gate);
            }
        }
        Observer?.OnCompleted(timestamp, error);
        if (waiter is not null)
        {
            if (error is null)
            {
                waiter.TrySetResult();
            }
            else
            {
                waiter.TrySetException(new PsException(error.Code, error.Message, error));
            }
        }
        if (ready is not null)
        {
            for (int i = ready.Count - 1; i >= 0; i--)
            {
                Dispatch(ready[i]);
            }
        }
    }

    /// <summary>A receive thread is handling a batch of answers (set in <see cref="OnResponse"/>, cleared in <see cref="OnBatchEnd"/>).</summary>
    [ThreadStatic]
    private static bool t_inReceiveBatch;

    [ThreadStatic]
    private static bool t_pulseAtBatchEnd;

    /// <summary>Wakes the callers waiting on calls completed during the batch that just ended, once.</summary>
    internal void OnBatchEnd()
    {
        t_inReceiveBatch = false;
        if (t_pulseAtBatchEnd)
        {
            t_pulseAtBatchEnd = false;
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    internal void OnLinkClosed(ServerLink link, string reason)
    {
        link.FailCalls(reason);
        List<Slice> lost = new();
        lock (_sliceLock)
        {
            foreach (var (id, slice) in _inflight)
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
        if (_shutdownReason is null)
        {
            _log.LogWarningLinkLost(NodeId, link.Server.Describe(), reason);
        }
        foreach (var slice in lost)
        {
            if (!TryFailOver(slice, retryAt: 0, mayBeApplied: true))
            {
                CompleteSlice(slice, new PsException(PsErrorCode.ConnectionLost, $"{link.Server.Describe()} closed the connection while call {slice.Op.Timestamp} was outstanding: {reason}"));
            }
        }
        if (lost.Count > 0)
        {
            ResendOrphans();
        }
    }

    private void ScanTimeouts()
    {
        var expired = new List<Slice>();
        while (!_shutdown.IsCancellationRequested)
        {
            Thread.Sleep(OrphanRetryMs);
            long now = Environment.TickCount64;
            lock (_sliceLock)
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
            foreach (var slice in expired)
            {
                CompleteSlice(slice, new PsException(PsErrorCode.Timeout,
                    $"no answer from {slice.Link.Server.Describe()} to {slice.Op.Kind.ToString().ToLowerInvariant()} (call {slice.Op.Timestamp}, table '{slice.Op.Table.Name}') within {_options.RequestTimeout.TotalSeconds:0.#} s"));
            }
            expired.Clear();
            ResendOrphans();
        }
    }
}

public sealed partial class PsClient
{
    internal void SetTau(PsTable table, int tau)
    {
        lock (_gate)
        {
            table.SetTauUnderLock(tau);
            Monitor.PulseAll(_gate); // a larger tau may release callers waiting on the old bound
        }
    }
}
