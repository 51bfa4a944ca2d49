using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>The view a worker routes by and its connection to each server of that view, swapped as one.</summary>
internal sealed class Routing(ClusterView view, ServerLink[] bySlot)
{
    public static readonly Routing None = new(null!, []);

    public ClusterView View { get; } = view;

    /// <summary>The link to <c>View.Servers[slot]</c>.</summary>
    public ServerLink[] BySlot { get; } = bySlot;
}

// Failover: when a server is lost, the slices it had not answered are kept ("orphans") and sent again, cut by the
// next view, to the keys' new primaries. A resent push carries FrameFlags.Resend, the request id of the frame it
// replaces (Round) and the view that frame was cut by (Aux): a server that holds the frame's keys under that view
// and has that frame recorded (it was a replica of the lost primary) skips them, so nothing is applied twice.
public sealed partial class PsClient
{
    /// <summary>How often orphans are looked at again (and timeouts scanned).</summary>
    private const int OrphanRetryMs = 20;

    /// <summary>A slice lost with its connection is tried again after this even without a new view (a transient drop).</summary>
    private const int LostLinkRetryMs = 250;

    private readonly object _routeLock = new();
    private readonly Dictionary<int, ServerLink> _linksById = new();
    private readonly List<ServerLink> _everyLink = new();
    private readonly List<Slice> _orphans = new(); // under _sliceLock
    private readonly object _resendLock = new(); // one resender at a time; reentrant (a close may resend)
    private readonly Operation _resliceScratch = new();
    private uint _unreachableLoggedFor;
    private int _orphanCount;
    private long _failovers;

    private long _lostAt; // Stopwatch timestamp: when calls were first left without a server, 0 when none are
    private long _lastFailoverTicks = -1;
    private long _lastFailoverAnsweredUnixMs = -1;

    /// <summary>When (Unix ms, wall clock) the last failover completed: comparable across processes on one machine.</summary>
    internal long LastFailoverAnsweredUnixMs => Interlocked.Read(ref _lastFailoverAnsweredUnixMs);

    /// <summary>How long the last failover took: from losing a server with calls outstanding to the first answer to a resent call.</summary>
    internal TimeSpan? LastFailover => Interlocked.Read(ref _lastFailoverTicks) is var t && t >= 0 ? TimeSpan.FromTicks(t) : null;

    private void NoteCallsLost() => Interlocked.CompareExchange(ref _lostAt, System.Diagnostics.Stopwatch.GetTimestamp(), 0);

    private void NoteResentAnswered()
    {
        long lost = Interlocked.Exchange(ref _lostAt, 0);
        if (lost == 0)
        {
            return;
        }
        var took = System.Diagnostics.Stopwatch.GetElapsedTime(lost);
        Interlocked.Exchange(ref _lastFailoverTicks, took.Ticks);
        Interlocked.Exchange(ref _lastFailoverAnsweredUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        _log.LogWarning("Worker {Id} failed over in {Ms:0.0} ms: the first resent call was answered by the keys' new owner ({Slices} slices resent so far)", NodeId, took.TotalMilliseconds, Failovers);
    }

    internal Routing Routes => _routes == Routing.None ? throw new InvalidOperationException("not connected") : _routes;

    /// <summary>Slices sent again to a new owner after their server was lost or the views disagreed.</summary>
    internal long Failovers => Interlocked.Read(ref _failovers);

    /// <summary>Connects to the servers of a newer view (reusing open links), swaps the routing, closes links to servers that left.</summary>
    private void UpdateRoutes(ClusterView view, bool startup)
    {
        List<ServerLink> gone = new();
        List<ServerLink>? joined = null;
        List<(PsTable Table, long Round)>? roundsFrom = null;
        lock (_routeLock)
        {
            if (_routes != Routing.None && view.Number <= _routes.View.Number)
            {
                return;
            }
            var bySlot = new ServerLink[view.Servers.Count];
            for (int slot = 0; slot < bySlot.Length; slot++)
            {
                var server = view.Servers[slot];
                if (_linksById.TryGetValue(server.Id, out var open) && !open.Connection.IsClosed)
                {
                    bySlot[slot] = open;
                    continue;
                }
                var link = new ServerLink(this, server);
                link.Connection = Connection.Connect(server.Host, server.Port, link, _options.Transport, _log, server.Describe(), TrafficMeter);
                _linksById[server.Id] = link;
                lock (_everyLink)
                {
                    _everyLink.Add(link);
                }
                bySlot[slot] = link;
            }
            foreach (var (id, link) in _linksById.Where(e => view.SlotOfServer(e.Key) < 0).ToList())
            {
                _linksById.Remove(id);
                if (!view.Nodes.Any(n => n.Id == id && n.Left))
                {
                    gone.Add(link); // a drained server answers what it has and closes the link when it exits
                }
            }
            var previous = _routes;
            lock (_gate)
            {
                _routes = new Routing(view, bySlot);
                if (!startup && previous != Routing.None)
                {
                    joined = bySlot.Where(link => previous.View.SlotOfServer(link.Server.Id) < 0).ToList();
                    roundsFrom = SyncRoundsFrom();
                }
            }
        }
        if (!startup)
        {
            _log.LogInformation("Worker {Id} routes by view {View}: {Servers} servers", NodeId, view.Number, view.Servers.Count);
        }
        if (joined is { Count: > 0 } && roundsFrom is { Count: > 0 })
        {
            AnnounceRounds(view, joined, roundsFrom);
        }
        foreach (var link in gone)
        {
            link.Connection.Close($"{link.Server.Describe()} left the view");
        }
    }

    /// <summary>Each sync table's next push round (under <c>_gate</c>): the first one cut by routes just switched.</summary>
    private List<(PsTable Table, long Round)> SyncRoundsFrom()
    {
        var rounds = new List<(PsTable, long)>();
        lock (_tables)
        {
            foreach (var table in _tables.Values)
            {
                if (table.Info.Mode == UpdateMode.Sync && table.NextRound > 0)
                {
                    rounds.Add((table, table.NextRound));
                }
            }
        }
        return rounds;
    }

    /// <summary>
    /// Tells servers new to this worker which of its sync rounds they will never see: those it cut by views without them.
    /// A joined server cannot know otherwise, and would hold a round open for a push that never comes (while the worker
    /// that did send its part waits for the ack, and the other at the next barrier).
    /// </summary>
    private void AnnounceRounds(ClusterView view, List<ServerLink> joined, List<(PsTable Table, long Round)> roundsFrom)
    {
        foreach (var link in joined)
        {
            foreach (var (table, round) in roundsFrom)
            {
                var marker = new FrameHeader
                {
                    Type = MessageType.Push,
                    Flags = FrameFlags.RoundsFrom,
                    SenderId = NodeId,
                    ViewNumber = view.Number,
                    TableId = table.Info.Id,
                    ElementType = WireElementType.Float32,
                    RowWidth = table.Width,
                    Round = round,
                };
                try
                {
                    link.Connection.Send(marker, ReadOnlySpan<byte>.Empty);
                }
                catch (TransportException ex)
                {
                    _log.LogDebug("Worker {Id}: could not tell {Server} where its rounds of table '{Table}' start: {Message}", NodeId, link.Server.Describe(), table.Name, ex.Message);
                }
            }
        }
    }

    private void CloseLinks(string reason)
    {
        List<ServerLink> links;
        lock (_routeLock)
        {
            links = _linksById.Values.ToList();
        }
        foreach (var link in links)
        {
            link.Connection.Close(reason);
        }
    }

    private void OnNewView() => _ = Task.Run(ResendOrphans);

    /// <summary>Routes by the newest view the scheduler sent, if not yet; a server that cannot be reached is tried again later.</summary>
    private void EnsureRoutesCurrent()
    {
        var view = _view;
        if (view is null || _routes == Routing.None || view.Number <= _routes.View.Number)
        {
            return;
        }
        try
        {
            UpdateRoutes(view, startup: false);
        }
        catch (TransportException ex)
        {
            if (_unreachableLoggedFor != view.Number)
            {
                _unreachableLoggedFor = view.Number;
                _log.LogWarning("Worker {Id} cannot route by view {View} yet: {Message}", NodeId, view.Number, ex.Message);
            }
        }
    }

    /// <summary>
    /// Keeps a slice whose server was lost (or refused it as not the owner) to send it again, when the table can fail
    /// over: replicated, not past its deadline. It is sent again as soon as a newer view arrives, or at
    /// <paramref name="retryAt"/> without one (0: after <see cref="LostLinkRetryMs"/>, for a connection that only dropped).
    /// <paramref name="mayBeApplied"/>: the server may have applied the frame, so its resends name it.
    /// </summary>
    private bool TryFailOver(Slice slice, long retryAt, bool mayBeApplied)
    {
        var routes = _routes;
        // A refused call was applied nowhere and a server that left gracefully handed its keys over: both can go to
        // the keys' new owners. A call lost with a dead server can only where other copies of its keys exist.
        if (_shutdownReason is not null || routes == Routing.None || slice.ValueStart >= 0 || slice.Deadline < Environment.TickCount64
            || (mayBeApplied && routes.View.Replication <= 1 && !LeftGracefully(slice.Link.Server.Id)))
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
        lock (_sliceLock)
        {
            slice.RetryAt = retryAt != 0 ? retryAt : Environment.TickCount64 + LostLinkRetryMs;
            _orphans.Add(slice);
            NoteCallsLost();
            _orphanCount = _orphans.Count;
        }
        return true;
    }

    /// <summary>Whether a server was drained (left the job after its ranges moved) rather than lost.</summary>
    private bool LeftGracefully(int serverId) => _view?.Nodes.Any(n => n.Id == serverId && n.Left) == true;

    /// <summary>A WrongOwner answer: if the server's view is older than the slice's, ask again shortly; else wait for the next view.</summary>
    private static long RetryAfterWrongOwner(Slice slice, in FrameHeader answer) =>
        Environment.TickCount64 + (answer.ViewNumber < slice.ViewNumber ? OrphanRetryMs : LostLinkRetryMs);

    /// <summary>Sends the orphans that a newer view (or their retry time) allows, each cut by the current view; fails those past their deadline.</summary>
    private void ResendOrphans()
    {
        var current = _view;
        if (Volatile.Read(ref _orphanCount) == 0 && (current is null || _routes == Routing.None || current.Number <= _routes.View.Number))
        {
            return; // the common case, checked every OrphanRetryMs
        }
        lock (_resendLock)
        {
            EnsureRoutesCurrent();
            var routes = _routes;
            long now = Environment.TickCount64;
            List<Slice>? due = null;
            List<Slice>? expired = null;
            lock (_sliceLock)
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
                CompleteSlice(slice, new PsException(PsErrorCode.Timeout,
                    $"call {slice.Op.Timestamp} on table '{slice.Op.Table.Name}' was waiting for a new owner of its keys after {slice.Link.Server.Describe()} was lost or refused them; none answered within {_options.RequestTimeout.TotalSeconds:0.#} s (view {routes.View.Number})"));
            }
            foreach (var slice in due ?? [])
            {
                Resend(slice, routes);
            }
        }
    }

    /// <summary>Cuts an orphan's keys (and values) by the current view and sends the pieces; the operation now waits for them instead.</summary>
    private void Resend(Slice old, Routing routes)
    {
        var op = old.Op;
        if (FrameHeader.TryRead(old.Frame, int.MaxValue, out var sent, out _) != HeaderStatus.Ok)
        {
            CompleteSlice(old, new PsException(PsErrorCode.Internal, $"call {op.Timestamp}: cannot read back its frame to send it again"));
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
                _options.Transport.MaxFrameBytes, new FrameHeader
                {
                    Type = op.Kind,
                    SenderId = NodeId,
                    Timestamp = op.Timestamp,
                    ViewNumber = routes.View.Number,
                    TableId = sent.TableId,
                    ElementType = sent.ElementType,
                    AnswerCodec = sent.AnswerCodec,
                    Round = sent.Round,
                });
            KeySlicer.Slice(request, scratch, keys, values, this);
        }
        catch (PsException ex)
        {
            lock (_sliceLock)
            {
                foreach (var piece in scratch.Slices)
                {
                    Recycle(piece);
                }
            }
            scratch.Slices.Clear();
            CompleteSlice(old, ex);
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
                FrameHeader.TryRead(slice.Frame, int.MaxValue, out var header, out _);
                header.Flags |= FrameFlags.Resend;
                header.Aux = (uint)old.Link.Server.Id;
                header.Write(slice.Frame);
            }
            else if (old.PredecessorId != 0)
            {
                FrameHeader.TryRead(slice.Frame, int.MaxValue, out var header, out _);
                header.Flags |= FrameFlags.Resend;
                header.Round = (long)old.PredecessorId;
                header.Aux = old.PredecessorView;
                header.Write(slice.Frame);
            }
        }
        if (pieces.Count == 0)
        {
            CompleteSlice(old, null); // nothing left to send (an empty sync push to the lost server)
            return;
        }
        long deadline = Environment.TickCount64 + (long)_options.RequestTimeout.TotalMilliseconds;
        Interlocked.Add(ref op.PendingSlices, pieces.Count - 1); // the old slice's count passes to its pieces
        lock (_sliceLock)
        {
            op.Slices.AddRange(pieces); // the old slice stays listed: recycled with the operation
            foreach (var slice in pieces)
            {
                slice.Deadline = deadline;
                slice.SendState = Slice.SendInProgress;
                _inflight[slice.RequestId] = slice;
            }
        }
        Interlocked.Add(ref _failovers, pieces.Count);
        var toSend = pieces.ToArray(); // rare path
        pieces.Clear();
        SendSlices(toSend, default, AnswersPromptly(op.Table.Info.Id));
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
