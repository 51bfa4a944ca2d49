using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Client.Routing;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch, the sending side of the data path: checks a call, cuts it by owning server (KeySlicer), encodes
// its frames (SliceEncoding), parks it on its dependencies or sends it, and completes it slice by slice.
// Owns no table of its own: timestamps are the CallClock's, slices in flight the SliceLedger's, routes the RouteTable's.
// Uses: Routing (routes, request ids), ISliceRecovery (failover, wired by the host). Steady state allocates nothing:
// operations and slices are pooled, frames and position lists rented.

/// <summary>Issues, sends and completes a worker's push and pull calls.</summary>
internal sealed class Dispatcher(int nodeId, WorkerOptions options, CallClock clock, SliceLedger ledger, RouteTable routeTable, PromptTables prompt) : ISliceSource
{
    /// <summary>Where slices that cannot be answered where they were sent go; set once by the host.</summary>
    public ISliceRecovery Recovery { get; set; } = null!;

    /// <summary>
    /// Issues a call: returns its timestamp once it is sent, or parked on its dependencies. <paramref name="kept"/>, for a
    /// filtered push: the rows the table's push filter kept, by position in <paramref name="keys"/>.
    /// </summary>
    public long Submit(TableState table, MessageType kind, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after,
        ReadOnlySpan<bool> kept = default)
    {
        Validate(table, kind, keys, values, destination, after);
        bool pushes = kind != MessageType.Pull;
        var op = clock.Issue(table, kind, destination, after, routeTable, out var routes, out long round);
        long timestamp = op.Timestamp;
        // Without dependencies the call is sent before this method returns: large value sections can then go to the
        // socket straight from the caller's memory instead of through the frame.
        bool inline = op.After.Count == 0;
        try
        {
            // Under replication a slice may be sent again to a new primary, so its frame must hold its values.
            BuildSlices(op, routes, keys, pushes ? values : default, round, deferLargeValues: inline && routes != Routes.None && routes.View.ChainLength <= 1 && table.Traffic is null);
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
            ledger.Release(op);
            FinishOperation(op);
            throw;
        }
        if (op.After.Count > 0 && clock.TryPark(op))
        {
            return timestamp;
        }
        Dispatch(op, pushes ? values : default);
        return timestamp;
    }

    /// <summary>Throws when a call's arguments do not fit its table (unsorted keys, wrong sizes, unknown dependencies).</summary>
    public void Validate(TableState table, MessageType kind, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after)
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
        if (kind != MessageType.Pull && table.Info.Element == ElementType.Float32 && Extensions.Simd.IndexOfNonFinite(values) is int bad and >= 0)
        {
            // Refused before anything is sent, so no server applies part of it: one NaN would spread through every
            // later update of its key (and the whole model, once pulled).
            throw new PsException(PsErrorCode.InvalidArgument,
                $"push to table '{table.Name}' holds {values[bad]} at value {bad} (key {keys[bad / width]}, column {bad % width}): refused before sending, the table is unchanged. Non-finite gradients usually mean the learning rate is too high");
        }
        if (kind != MessageType.Push && destination.Length < (long)keys.Length * width)
        {
            throw new ArgumentException($"table '{table.Name}' has width {width}: {keys.Length} keys need room for {(long)keys.Length * width} values, the destination holds {destination.Length}", nameof(destination));
        }
        foreach (long t in after)
        {
            if (t < 0 || t >= clock.Next)
            {
                throw new ArgumentOutOfRangeException(nameof(after), t, "a dependency must be the timestamp of an earlier call");
            }
        }
    }

    /// <summary>Cuts the keys by owning server, one frame each (<see cref="KeySlicer"/>).</summary>
    private void BuildSlices(Operation op, Routes routes, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, long round, bool deferLargeValues)
    {
        if (routes == Routes.None)
        {
            throw new InvalidOperationException("not connected");
        }
        var view = routes.View;
        var table = op.Table;
        bool pull = op.Kind == MessageType.Pull;
        var request = new SliceRequest(
            view,
            view.PlacementOf(table.Info),
            table.Width,
            EveryServer: !pull && table.Info.Mode == UpdateMode.Sync, // every server counts every worker's round
            deferLargeValues,
            options.Transport.MaxFrameBytes,
            new FrameHeader
            {
                Type = op.Kind,
                Flags = pull && table.Info.FiltersPulls ? FrameFlags.FilterAnswer : FrameFlags.None,
                SenderId = nodeId,
                Timestamp = op.Timestamp,
                ViewNumber = view.Number,
                TableId = table.Info.Id,
                ElementType = table.Info.ElementType,
                AnswerCodec = pull && table.Traffic is { } traffic ? traffic.AnswerByte : (byte)0, // kept by resends of the plain frame
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

    Slice ISliceSource.RentSlice() => ledger.Rent();

    ulong ISliceSource.NextRequestId() => routeTable.NextRequestId();

    /// <summary>
    /// Sends every slice of an operation whose dependencies are met (or fails it if one of them failed).
    /// <paramref name="values"/> are the caller's values when it is still in the call (slices may send from them).
    /// </summary>
    private void Dispatch(Operation op, ReadOnlySpan<float> values = default)
    {
        foreach (long t in op.After)
        {
            if (clock.FailureOf(t) is { } failed)
            {
                op.Error = new PsException(PsErrorCode.DependencyFailed, $"call {op.Timestamp} depends on call {t}, which failed: {failed.Message}", failed);
                ledger.Release(op);
                FinishOperation(op);
                return;
            }
        }
        if (op.Slices.Count == 0)
        {
            FinishOperation(op);
            return;
        }
        long deadline = Environment.TickCount64 + (long)options.RequestTimeout.TotalMilliseconds;
        // Copy the list: a fast response may complete and recycle the operation while we are still sending.
        int count = op.Slices.Count;
        var rented = ArrayPool<Slice>.Shared.Rent(count);
        var slices = rented.AsSpan(0, count);
        op.Slices.CopyTo(rented);
        ledger.Track(slices, deadline);
        try
        {
            SendSlices(slices, values, prompt.AnswersPromptly(op.Table.Info.Id));
        }
        finally
        {
            slices.Clear();
            ArrayPool<Slice>.Shared.Return(rented);
        }
    }

    /// <summary>Sends slices entered in the ledger; <paramref name="answeredOnArrival"/>: the servers answer them on arrival (counted for send batching).</summary>
    public void SendSlices(ReadOnlySpan<Slice> slices, ReadOnlySpan<float> values, bool answeredOnArrival)
    {
        foreach (var slice in slices)
        {
            var link = slice.Link;
            try
            {
                if (answeredOnArrival)
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
                if (ledger.Take(slice.RequestId) is { } taken && !Recovery.TryFailOver(taken, mayBeApplied: true))
                {
                    CompleteSlice(taken, new PsException(PsErrorCode.ConnectionLost, $"cannot send to {link.Server.Describe()}: {ex.Message}", ex));
                }
            }
            finally
            {
                ledger.EndSend(slice);
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

    /// <summary>One slice of an operation is answered (or failed); the last one completes the operation.</summary>
    public void CompleteSlice(Slice slice, PsException? error)
    {
        var op = slice.Op;
        if (slice.Resent && error is null)
        {
            Recovery.OnResentAnswered();
        }
        if (error is not null)
        {
            Interlocked.CompareExchange(ref op.Error, error, null);
        }
        if (Interlocked.Decrement(ref op.PendingSlices) == 0)
        {
            ledger.Release(op);
            FinishOperation(op);
        }
    }

    /// <summary>Marks the operation's timestamp done and sends the operations that waited on it.</summary>
    private void FinishOperation(Operation op)
    {
        if (clock.Complete(op) is { } ready)
        {
            for (int i = ready.Count - 1; i >= 0; i--)
            {
                Dispatch(ready[i]);
            }
        }
    }

    /// <summary>Fails the slices in flight past their deadline (the timeout scan).</summary>
    public void FailExpired(List<Slice> scratch)
    {
        ledger.TakeExpired(Environment.TickCount64, scratch);
        foreach (var slice in scratch)
        {
            CompleteSlice(slice, new PsException(PsErrorCode.Timeout,
                $"no answer from {slice.Link.Server.Describe()} to {slice.Op.Kind.ToString().ToLowerInvariant()} (call {slice.Op.Timestamp}, table '{slice.Op.Table.Name}') within {options.RequestTimeout.TotalSeconds:0.#} s"));
        }
        scratch.Clear();
    }
}
