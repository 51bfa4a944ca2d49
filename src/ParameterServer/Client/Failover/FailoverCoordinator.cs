using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Client.Dispatch;
using ParameterServer.Client.JobControl;
using ParameterServer.Client.Routing;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Failover;

// Room: Failover. When a server is lost, the slices it had not answered are kept ("orphans") and sent again, cut by the
// next view, to the keys' new primaries. A resent push carries FrameFlags.Resend, the request id of the frame it
// replaces (Round) and the view that frame was cut by (Aux): a server that holds the frame's keys under that view
// and has that frame recorded (it was a replica of the lost primary) skips them, so nothing is applied twice.
// Owns: the orphans (and their lock), the resend lock, the scratch operation resends are cut into, the count of
// resent slices, failover timing, and reacting to a newer view (reroute, then resend).
// Uses: Routing (views, routes, request ids), Dispatch (ledger, dispatcher, table modes); implements ISliceRecovery.

/// <summary>Keeps the slices a lost or refusing server did not answer and sends them again to the keys' new owners.</summary>
internal sealed class FailoverCoordinator(int nodeId, WorkerOptions options, ILogger log, ClientShutdown shutdown, ViewFeed views, RouteTable routeTable,
    SliceLedger ledger, Dispatcher dispatcher, PromptTables prompt) : ISliceRecovery
{
    /// <summary>How often orphans are looked at again (and timeouts scanned).</summary>
    public const int OrphanRetryMs = 20;

    /// <summary>A slice lost with its connection is tried again after this even without a new view (a transient drop).</summary>
    private const int LostLinkRetryMs = 250;

    private readonly Lock _orphanLock = new();
    private readonly List<Slice> _orphans = new(); // under _orphanLock
    private readonly object _resendLock = new(); // one resender at a time; reentrant (a close may resend)
    private readonly Operation _resliceScratch = new();
    private readonly FailoverTiming _timing = new(nodeId, log);
    private uint _unreachableLoggedFor;
    private int _orphanCount;
    private long _failovers;

    /// <summary>Slices sent again to a new owner after their server was lost or the views disagreed.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    /// <inheritdoc cref="FailoverTiming.LastAnsweredUnixMs"/>
    public long LastFailoverAnsweredUnixMs => _timing.LastAnsweredUnixMs;

    /// <inheritdoc cref="FailoverTiming.Last"/>
    public TimeSpan? LastFailover => _timing.Last;

    public void OnResentAnswered() => _timing.NoteResentAnswered(Failovers);

    /// <summary>A newer view arrived: reroute and resend, off the scheduler's receive thread (it may connect).</summary>
    public void OnNewView() => _ = Task.Run(ResendDue);

    /// <summary>Routes by the newest view the scheduler sent, if not yet; a server that cannot be reached is tried again later.</summary>
    private void EnsureRoutesCurrent()
    {
        var view = views.Latest;
        var routes = routeTable.Current;
        if (view is null || routes == Routes.None || view.Number <= routes.View.Number)
        {
            return;
        }
        try
        {
            routeTable.Update(view, startup: false);
        }
        catch (TransportException ex)
        {
            if (_unreachableLoggedFor != view.Number)
            {
                _unreachableLoggedFor = view.Number;
                log.LogCannotRouteYet(nodeId, view.Number, ex.Message);
            }
        }
    }

    public bool TryFailOver(Slice slice, bool mayBeApplied) => TryFailOver(slice, retryAt: 0, mayBeApplied);

    /// <summary>A WrongOwner answer: if the server's view is older than the slice's, ask again shortly; else wait for the next view.</summary>
    public bool TryRetryRefused(Slice slice, in FrameHeader answer) =>
        TryFailOver(slice, Environment.TickCount64 + (answer.ViewNumber < slice.ViewNumber ? OrphanRetryMs : LostLinkRetryMs), mayBeApplied: false);

    /// <summary>
    /// Keeps a slice whose server was lost (or refused it as not the owner) to send it again, when the table can fail
    /// over: replicated, not past its deadline. It is sent again as soon as a newer view arrives, or at
    /// <paramref name="retryAt"/> without one (0: after <see cref="LostLinkRetryMs"/>, for a connection that only dropped).
    /// <paramref name="mayBeApplied"/>: the server may have applied the frame, so its resends name it.
    /// </summary>
    private bool TryFailOver(Slice slice, long retryAt, bool mayBeApplied)
    {
        var routes = routeTable.Current;
        // A refused call was applied nowhere and a server that left gracefully handed its keys over: both can go to
        // the keys' new owners. A call lost with a dead server can only where other copies of its keys exist.
        if (shutdown.Reason is not null || routes == Routes.None || slice.ValueStart >= 0 || slice.Deadline < Environment.TickCount64
            || (mayBeApplied && routes.View.Replication <= 1 && !views.LeftGracefully(slice.Link.Server.Id)))
        {
            return false;
        }
        slice.LostWithServer = mayBeApplied;
        if (mayBeApplied && slice.Op.Kind != MessageType.Pull && slice.Op.Table.Info.Mode == UpdateMode.Async)
        {
            // The lost server may have applied this frame and passed it on: its resends name it. A refused frame
            // (WrongOwner) was applied nowhere, so its resends keep naming the frame before it, if any.
            slice.PredecessorId = slice.RequestId;
            slice.PredecessorView = slice.ViewNumber;
        }
        lock (_orphanLock)
        {
            slice.RetryAt = retryAt != 0 ? retryAt : Environment.TickCount64 + LostLinkRetryMs;
            _orphans.Add(slice);
            _timing.NoteCallsLost();
            _orphanCount = _orphans.Count;
        }
        return true;
    }

    /// <summary>For the stall diagnosis: the slices waiting to be sent again, and what they wait for.</summary>
    public string DescribeOrphans()
    {
        long now = Environment.TickCount64;
        lock (_orphanLock)
        {
            if (_orphans.Count == 0)
            {
                return "no slice waits for a failover";
            }
            return $"{_orphans.Count} slices wait to be sent again (lost with or refused by {string.Join(", ", _orphans.Select(s => s.Link.Server.Id).Distinct().Order())}; " +
                $"cut by views {_orphans.Min(s => s.ViewNumber)}-{_orphans.Max(s => s.ViewNumber)}, next retry in {(_orphans.Min(s => s.RetryAt) - now) / 1000.0:0.0} s, " +
                $"first deadline in {(_orphans.Min(s => s.Deadline) - now) / 1000.0:0.0} s); routes by view {routeTable.Current.View?.Number}, latest view {views.Latest?.Number}";
        }
    }

    /// <summary>Sends the orphans that a newer view (or their retry time) allows, each cut by the current view; fails those past their deadline.</summary>
    public void ResendDue()
    {
        var current = views.Latest;
        var inForce = routeTable.Current;
        if (Volatile.Read(ref _orphanCount) == 0 && (current is null || inForce == Routes.None || current.Number <= inForce.View.Number))
        {
            return; // the common case, checked every OrphanRetryMs
        }
        lock (_resendLock)
        {
            EnsureRoutesCurrent();
            var routes = routeTable.Current;
            long now = Environment.TickCount64;
            List<Slice>? due = null;
            List<Slice>? expired = null;
            lock (_orphanLock)
            {
                for (int i = _orphans.Count - 1; i >= 0; i--)
                {
                    var slice = _orphans[i];
                    if (slice.Deadline < now)
                    {
                        (expired ??= new()).Add(slice);
                    }
                    else if (routes.View.Number > slice.ViewNumber || slice.RetryAt <= now)
                    {
                        (due ??= new()).Add(slice);
                    }
                    else
                    {
                        continue;
                    }
                    _orphans.RemoveAt(i);
                }
                _orphanCount = _orphans.Count;
            }
            foreach (var slice in expired ?? [])
            {
                dispatcher.CompleteSlice(slice, new PsException(PsErrorCode.Timeout,
                    $"call {slice.Op.Timestamp} on table '{slice.Op.Table.Name}' was waiting for a new owner of its keys after {slice.Link.Server.Describe()} was lost or refused them; none answered within {options.RequestTimeout.TotalSeconds:0.#} s (view {routes.View.Number})"));
            }
            foreach (var slice in due ?? [])
            {
                Resend(slice, routes);
            }
        }
    }

    /// <summary>Cuts an orphan's keys (and values) by the current view and sends the pieces; the operation now waits for them instead.</summary>
    private void Resend(Slice old, Routes routes)
    {
        var op = old.Op;
        if (!old.TryReadHeader(out var sent))
        {
            dispatcher.CompleteSlice(old, new PsException(PsErrorCode.Internal, $"call {op.Timestamp}: cannot read back its frame to send it again"));
            return;
        }
        int count = old.Count;
        int width = op.Table.Width;
        ulong[]? rentedKeys = null;
        ReadOnlySpan<ulong> keys;
        if ((sent.Flags & FrameFlags.KeyRange) != 0)
        {
            var pair = MemoryMarshal.Cast<byte, ulong>(old.Frame.AsSpan(FrameHeader.Size, 2 * sizeof(ulong)));
            rentedKeys = ArrayPool<ulong>.Shared.Rent(count);
            for (int i = 0; i < count; i++)
            {
                rentedKeys[i] = pair[0] + (ulong)i;
            }
            keys = rentedKeys.AsSpan(0, count);
        }
        else
        {
            keys = MemoryMarshal.Cast<byte, ulong>(old.Frame.AsSpan(FrameHeader.Size, count * sizeof(ulong)));
        }
        var values = op.Kind == MessageType.Pull ? default : MemoryMarshal.Cast<byte, float>(old.Frame.AsSpan(old.HeadLength, old.ValueCount * sizeof(float)));
        var scratch = _resliceScratch;
        scratch.Slices.Clear();
        scratch.Table = op.Table;
        scratch.Kind = op.Kind;
        try
        {
            var request = new SliceRequest(routes.View, routes.View.PlacementOf(op.Table.Info), width, EveryServer: false, DeferLargeValues: false,
                options.Transport.MaxFrameBytes, new FrameHeader
                {
                    Type = op.Kind,
                    SenderId = nodeId,
                    Timestamp = op.Timestamp,
                    ViewNumber = routes.View.Number,
                    TableId = sent.TableId,
                    ElementType = sent.ElementType,
                    AnswerCodec = sent.AnswerCodec,
                    Round = sent.Round,
                });
            KeySlicer.Slice(request, scratch, keys, values, dispatcher);
        }
        catch (PsException ex)
        {
            ledger.Discard(scratch.Slices);
            dispatcher.CompleteSlice(old, ex);
            return;
        }
        finally
        {
            if (rentedKeys is not null)
            {
                ArrayPool<ulong>.Shared.Return(rentedKeys);
            }
        }
        var pieces = scratch.Slices;
        foreach (var slice in pieces)
        {
            slice.Op = op;
            slice.Link = routes.BySlot[slice.ServerSlot];
            slice.ViewNumber = routes.View.Number;
            slice.PredecessorId = old.PredecessorId;
            slice.PredecessorView = old.PredecessorView;
            slice.Resent = true;
            MapPositions(old, slice);
            // A sync push refused by a server that no longer owns its keys was applied nowhere: it goes out as an
            // ordinary push of its round (no flags). One lost with its server is marked as a resend below.
            if (op.Kind != MessageType.Pull && op.Table.Info.Mode == UpdateMode.Sync && old.LostWithServer)
            {
                // A sync push keeps its round; Aux names the server it was meant for, whose round aggregate the new
                // owner may hold already (then it only acknowledges).
                slice.TryReadHeader(out var header);
                header.Flags |= FrameFlags.Resend;
                header.Aux = (uint)old.Link.Server.Id;
                slice.WriteHeader(header);
            }
            else if (old.PredecessorId != 0)
            {
                slice.TryReadHeader(out var header);
                header.Flags |= FrameFlags.Resend;
                header.Round = (long)old.PredecessorId;
                header.Aux = old.PredecessorView;
                slice.WriteHeader(header);
            }
        }
        if (pieces.Count == 0)
        {
            dispatcher.CompleteSlice(old, null); // nothing left to send (an empty sync push to the lost server)
            return;
        }
        long deadline = Environment.TickCount64 + (long)options.RequestTimeout.TotalMilliseconds;
        Interlocked.Add(ref op.PendingSlices, pieces.Count - 1); // the old slice's count passes to its pieces
        var toSend = pieces.ToArray(); // rare path
        pieces.Clear();
        ledger.TrackPieces(op, toSend, deadline);
        Interlocked.Add(ref _failovers, toSend.Length);
        dispatcher.SendSlices(toSend, default, prompt.AnswersPromptly(op.Table.Info.Id));
    }

    /// <summary>Positions of a piece, relative to the old slice's keys, made relative to the call's keys (for the pull scatter).</summary>
    private static void MapPositions(Slice old, Slice piece)
    {
        if (piece.Positions is null)
        {
            if (old.Positions is null)
            {
                piece.Start += old.Start;
                return;
            }
            piece.Positions = ArrayPool<int>.Shared.Rent(piece.Count);
            for (int j = 0; j < piece.Count; j++)
            {
                piece.Positions[j] = old.Positions[piece.Start + j];
            }
            return;
        }
        for (int j = 0; j < piece.Count; j++)
        {
            int p = piece.Positions[j];
            piece.Positions[j] = old.Positions is null ? old.Start + p : old.Positions[p];
        }
    }
}
