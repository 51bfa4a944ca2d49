using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Server.Store;
using ParameterServer.Server.Sync;

namespace ParameterServer.Server.Replication;

/// <summary>
/// Chain replication of asynchronous tables: the primary of a block applies a push, forwards it to the block's other
/// copies (its successors on the ring) and acknowledges the worker only when every one of them has applied it.
/// Every copy records each frame by (worker, request id). A worker that lost a primary sends the frame's keys again,
/// cut by the new view, naming the frame they replace and the view it was cut by (FrameFlags.Resend): a copy skips
/// the keys it held under that view if it has that frame recorded (it was a replica of the lost primary and got the
/// push), and applies the rest. So a push is applied once on every copy whichever way the failover went. Replicas
/// apply the same operation (exact for the sum handler; for stateful optimizers concurrent pushes to different
/// blocks may reach a replica in another order). Owns the dedup records, the pushes waiting for replica answers and
/// the forward counters; sends through <see cref="PeerLinks"/>.
/// </summary>
internal sealed class ChainReplicator
{
    private readonly LocalServer _self;
    private readonly ViewGate _gate;
    private readonly Answers _answers;
    private readonly TableSet _tables;
    private readonly PeerLinks _links;
    private readonly AppliedRequests _applied = new();
    private readonly Lock _pendingLock = new();
    private readonly Dictionary<ulong, (PendingAck Ack, int PeerId)> _pendingReplicas = new();
    private readonly Stack<PendingAck> _pendingPool = new();
    private long _replicated;
    private long _streamed;
    private long _resendRowsSkipped;

    public ChainReplicator(LocalServer self, ViewGate gate, Answers answers, TableSet tables, PeerLinks links)
    {
        _self = self;
        _gate = gate;
        _answers = answers;
        _tables = tables;
        _links = links;
        links.Answered = OnReplicaAnswer;
        links.Lost = OnPeerLost;
    }

    /// <summary>Replicate frames sent to other copies.</summary>
    public long Replicated => Interlocked.Read(ref _replicated);

    /// <summary>Forwards streamed to a copy while the push arrived (cut-through), a subset of <see cref="Replicated"/>.</summary>
    public long Streamed => Interlocked.Read(ref _streamed);

    /// <summary>Rows of resends skipped because this copy had applied them before.</summary>
    public long ResendRowsSkipped => Interlocked.Read(ref _resendRowsSkipped);

    /// <summary>Whether <paramref name="sender"/>'s frame <paramref name="requestId"/> was applied here.</summary>
    public bool WasApplied(int sender, ulong requestId) => _applied.Contains(sender, requestId);

    public void CountSkipped(int rows) => Interlocked.Add(ref _resendRowsSkipped, rows);

    /// <summary>A worker's push waiting for its replicas; the last one to answer (or to be lost) acknowledges it.</summary>
    private sealed class PendingAck
    {
        public Connection Worker = null!;
        public FrameHeader Request;
        public TableStore Table = null!;
        public ulong[] Keys = []; // push-pull: the rows to answer with (KeyCount of them)
        public int KeyCount;
        public int Remaining;
        public List<SyncAggregator.PendingAck>? SyncAcks; // a sync round: the workers' acks, sent once the replicas have its aggregate
    }

    /// <summary>
    /// Applies a frame once: false when this frame (sender, request id) was applied before. A resend names the frame it
    /// replaces (<paramref name="predecessor"/>, cut by view <paramref name="predecessorView"/>): its keys this server
    /// held under that view are skipped when it has that frame recorded, since it applied them then, and so are keys an
    /// earlier resend of it applied here (see <see cref="AppliedRequests"/>); the skipped keys are returned in
    /// <paramref name="skipped"/>. An original frame arriving after its resends skips the keys they applied.
    /// </summary>
    private bool ApplyOnce(int sender, ulong requestId, bool resend, ulong predecessor, uint predecessorView,
        TableStore table, KeyList keys, ReadOnlySpan<float> values, out HashSet<ulong>? skipped)
    {
        bool first = resend
            ? _applied.TryRecordResend(sender, requestId, predecessor, keys, _gate.HeldUnder(predecessorView, table, keys, _self.Id), out skipped)
            : _applied.TryRecord(sender, requestId, keys, out skipped);
        if (!first)
        {
            return false;
        }
        if (skipped is null)
        {
            table.Apply(keys, values);
            return true;
        }
        // The rare path (a failover): apply only the keys not applied here before.
        int width = table.Width;
        var keep = new List<ulong>();
        var keepValues = new List<float>();
        for (int i = 0; i < keys.Count; i++)
        {
            if (!skipped.Contains(keys[i]))
            {
                keep.Add(keys[i]);
                keepValues.AddRange(values.Slice(i * width, width));
            }
        }
        Interlocked.Add(ref _resendRowsSkipped, keys.Count - keep.Count);
        table.Apply(KeyList.Of(CollectionsMarshal.AsSpan(keep)), CollectionsMarshal.AsSpan(keepValues));
        return true;
    }

    /// <summary>
    /// Applies an asynchronous push under replication (once, see <see cref="ApplyOnce"/>) and forwards it to the other
    /// copies of its blocks. Returns true when the acknowledgement is deferred until the replicas answer.
    /// </summary>
    public bool ApplyReplicated(Connection connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        // Applying and forwarding happen as one step with respect to refills (see Refill): a new replica gets every
        // push either inside its copy of a block or as a forward queued after that copy, never both, never neither.
        _gate.EnterApply();
        try
        {
            return ApplyAndForward(connection, header, table, keys, values);
        }
        finally
        {
            _gate.ExitApply();
        }
    }

    public bool ApplyAndForward(Connection connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        bool resend = (header.Flags & FrameFlags.Resend) != 0;
        if (!ApplyOnce(header.SenderId, header.RequestId, resend, (ulong)header.Round, header.Aux, table, keys, values, out var skipped))
        {
            return false; // this very frame was applied before: acknowledge only
        }
        return ForwardApplied(connection, header, table, keys, values, skipped, syncAcks: null);
    }

    /// <summary>
    /// Forwards what this primary applied to the other copies of its blocks (under the newest view); the acknowledgement
    /// (one worker's, or a sync round's <paramref name="syncAcks"/>) waits for them. Returns true when it does. When the
    /// push was streamed to its copies as it arrived (<see cref="t_stream"/>, set by the caller) and the stream still
    /// goes to the right copies, they are only told to commit it; otherwise the stream is aborted and the push goes whole.
    /// </summary>
    public bool ForwardApplied(Connection? connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values,
        HashSet<ulong>? skipped, List<SyncAggregator.PendingAck>? syncAcks)
    {
        var stream = t_stream;
        t_stream = null;
        var view = _gate.Current!; // the newest: a refill started for it copies blocks after every push forwarded by an older one
        int copies = Successors(view, header, table, keys, skipped, out var successors, out var distinct);
        if (stream is not null && (stream.View != view || skipped is not null || !stream.Healthy || !stream.GoesTo(distinct)))
        {
            stream.Close(); // the copies changed since it began (or one link failed): forwarded whole below
            stream = null;
        }
        if (distinct.Count == 0)
        {
            stream?.Close();
            return false;
        }
        var pending = RentPending(connection!, header, table, keys, distinct.Count + 1); // + 1: this thread, until all are sent
        pending.SyncAcks = syncAcks;
        foreach (int slot in distinct)
        {
            var successor = view.Servers[slot];
            ulong id = stream?.IdOf(slot) ?? _links.NextRequestId();
            lock (_pendingLock)
            {
                _pendingReplicas[id] = (pending, successor.Id); // before sending (or connecting): a failure must count it as answered
            }
            try
            {
                Connection peer;
                if (stream is not null)
                {
                    peer = stream.Commit(slot);
                    Interlocked.Increment(ref _streamed);
                }
                else
                {
                    peer = _links.GetPeer(successor).Connection;
                    ReplicaFrames.SendReplicate(_self.Id, view.Number, peer, id, header, table, keys, values, successors, copies, slot);
                }
                Interlocked.Increment(ref _replicated);
                if (peer.IsClosed)
                {
                    // Closed while we registered: its loss handler may have run before our entry existed.
                    throw new TransportException($"{successor.Describe()} closed the connection");
                }
            }
            catch (TransportException ex)
            {
                // The successor is gone: the copies that remain have the push; the next view fills a new replica.
                _self.Log.LogReplicateFailed(_self.Id, successor.Describe(), ex.Message);
                bool mine;
                lock (_pendingLock)
                {
                    mine = _pendingReplicas.Remove(id);
                }
                if (mine)
                {
                    Interlocked.Decrement(ref pending.Remaining);
                }
            }
        }
        stream?.Close();
        if (Interlocked.Decrement(ref pending.Remaining) == 0)
        {
            ReturnPending(pending);
            return false; // every replica answered already (or none could be reached): acknowledge now
        }
        return true;
    }

    /// <summary>
    /// Successor slots per key (<paramref name="successors"/>: copies per key, -1 where a chain is shorter or the copy
    /// needs no forward) and the distinct successors, in buffers reused by this thread (the steady state allocates
    /// nothing). Returns the copies per key beyond this one (0: not replicated).
    /// </summary>
    private int Successors(ClusterView view, in FrameHeader header, TableStore table, KeyList keys, HashSet<ulong>? skipped, out Span<int> successors, out List<int> distinct)
    {
        var placement = view.PlacementOf(table.Info);
        int copies = Math.Max(0, placement.ChainLength - 1);
        int needed = keys.Count * copies;
        var buffer = t_successors is { } reused && reused.Length >= needed ? reused : t_successors = new int[Math.Max(needed, 256)];
        successors = buffer.AsSpan(0, needed);
        distinct = t_distinct ??= new List<int>();
        distinct.Clear();
        if (copies == 0)
        {
            return 0;
        }
        Span<int> chain = stackalloc int[placement.ChainLength];
        long chainBlock = -1;
        int n = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            long block = table.Info.BlockOf(keys[i]);
            if (block != chainBlock)
            {
                n = placement.ChainOfBlock(block, chain); // keys of a block share its chain: once per block
                chainBlock = block;
            }
            for (int j = 1; j <= copies; j++)
            {
                int slot = j < n ? chain[j] : -1;
                if (slot >= 0 && skipped is not null && skipped.Contains(keys[i])
                    && ((header.Flags & FrameFlags.Resend) == 0 || !_gate.HeldUnder(header.Aux, table, keys[i], view.Servers[slot].Id)))
                {
                    // Skipped here as applied before: a copy new to the chain got it in its refill from this server; one
                    // that held it under the replaced frame's view gets it and decides for itself.
                    slot = -1;
                }
                successors[(i * copies) + j - 1] = slot;
                if (slot >= 0 && !distinct.Contains(slot))
                {
                    distinct.Add(slot);
                }
            }
        }
        return copies;
    }

    /// <summary>
    /// Opens <paramref name="stream"/> for a large push checked under <paramref name="view"/>, when every key of it goes
    /// to the same copies (one block, the usual large push): each gets the whole frame, so the worker's payload can be
    /// passed on as it arrives. False when the push is forwarded whole instead.
    /// </summary>
    public bool TryOpenStream(ForwardStream stream, ClusterView view, in FrameHeader request, TableStore table, KeyList keys)
    {
        if (_gate.Current != view || (request.Flags & FrameFlags.Resend) != 0 || _applied.Contains(request.SenderId, request.RequestId))
        {
            return false;
        }
        int copies = Successors(view, request, table, keys, null, out var successors, out var distinct);
        if (copies == 0 || distinct.Count != copies || successors.Contains(-1))
        {
            return false; // keys with different chains: each copy gets its own keys, whole
        }
        var replicate = ReplicaFrames.ReplicateHeader(_self.Id, view.Number, 0, request, keys.Count, table.Width);
        replicate.Flags |= request.Flags & FrameFlags.KeyRange; // the worker's payload, as it is
        replicate.PayloadLength = request.PayloadLength;
        stream.Open(view, replicate);
        try
        {
            foreach (int slot in distinct)
            {
                stream.AddTarget(slot, _links.GetPeer(view.Servers[slot]).Connection, _links.NextRequestId());
            }
        }
        catch (TransportException)
        {
            stream.Close();
            return false; // a copy cannot be reached: the whole-frame path reports it
        }
        return true;
    }

    /// <summary>The stream of the push being served on this thread, for <see cref="ForwardApplied"/> to commit (set by the caller, cleared there).</summary>
    [ThreadStatic]
    public static ForwardStream? t_stream;

    /// <summary>Applies a push that is not replicated; under the update gate so a checkpoint's snapshot sees it whole or not at all. False: acknowledge now.</summary>
    public bool ApplyPlain(TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        _gate.EnterApply();
        try
        {
            table.Apply(keys, values);
        }
        finally
        {
            _gate.ExitApply();
        }
        return false;
    }

    [ThreadStatic]
    private static int[]? t_successors;

    [ThreadStatic]
    private static List<int>? t_distinct;

    private PendingAck RentPending(Connection worker, in FrameHeader request, TableStore table, KeyList keys, int remaining)
    {
        PendingAck? pending;
        lock (_pendingPool)
        {
            _pendingPool.TryPop(out pending);
        }
        pending ??= new PendingAck();
        pending.Worker = worker;
        pending.Request = request;
        pending.Table = table;
        pending.Remaining = remaining;
        pending.KeyCount = 0;
        if (request.Type == MessageType.PushPull)
        {
            if (pending.Keys.Length < keys.Count)
            {
                pending.Keys = new ulong[Math.Max(keys.Count, 2 * pending.Keys.Length)];
            }
            for (int i = 0; i < keys.Count; i++)
            {
                pending.Keys[i] = keys[i];
            }
            pending.KeyCount = keys.Count;
        }
        return pending;
    }

    private void ReturnPending(PendingAck pending)
    {
        pending.SyncAcks = null;
        pending.Worker = null!;
        pending.Table = null!;
        lock (_pendingPool)
        {
            _pendingPool.Push(pending);
        }
    }

    /// <summary>A forward with packed keys or encoded values: decoded to the plain forward, then applied as one.</summary>
    public void HandleEncodedReplicate(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache keys)
    {
        string? problem = null;
        if ((header.Flags & (FrameFlags.KeysCached | FrameFlags.StoreKeys | FrameFlags.Masked)) != 0
            || WireEncoding.Decode(header, payload, keys, connection.MaxFrameBytes, out var plainHeader, out var plain, out problem) != WireEncoding.DecodeResult.Ok)
        {
            _answers.SendError(connection, header, ErrorCode.MalformedPayload, $"server {_self.Id} cannot decode a forwarded push: {problem ?? "only packed keys and encoded values are allowed in forwards"}");
            return;
        }
        try
        {
            HandleReplicate(connection, plainHeader, plain.AsSpan(FrameHeader.Size, plainHeader.PayloadLength));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(plain!);
        }
    }

    /// <summary>A replica applies a forwarded push once per (worker, dedup id) and answers.</summary>
    public void HandleReplicate(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var table = _tables.FromPeer(header.TableId);
        if (table is null || header.RowWidth != table.Width || DataPayload.Validate(header) is not null)
        {
            _answers.SendError(connection, header, ErrorCode.MalformedPayload, $"server {_self.Id} cannot apply a replicated push to table {header.TableId}");
            return;
        }
        var keys = DataPayload.Keys(header, payload);
        if (keys.FindUnsorted() >= 0)
        {
            _answers.SendError(connection, header, ErrorCode.KeysNotSorted, "replicated keys must be sorted");
            return;
        }
        _links.NoteInbound(connection, header.SenderId);
        // A primary declared dead (frozen, cut off) may send what it had queued once it runs again: refused from the
        // view that declares it dead on (its worker resends the push). A refill waits for the applies that checked an
        // older view, so none lands behind a copy made for a new replica.
        uint? deadIn = null;
        _gate.EnterReplicaApply();
        try
        {
            if (_gate.Current is { } current && current.IsDeclaredDead(header.SenderId))
            {
                deadIn = current.Number;
            }
            else
            {
                ApplyOnce((int)header.Aux, (ulong)header.Round, (header.Flags & FrameFlags.Resend) != 0, (ulong)header.Timestamp, header.ViewNumber,
                    table, keys, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)), out _);
            }
        }
        finally
        {
            _gate.ExitReplicaApply();
        }
        if (deadIn is { } view)
        {
            _answers.SendError(connection, header, ErrorCode.Conflict, $"server {_self.Id}: server {header.SenderId} was declared dead in view {view}: its forwards are refused");
            return;
        }
        _answers.SendAck(connection, header);
    }

    private void OnReplicaAnswer(ulong id, ErrorCode error, ReadOnlySpan<byte> payload)
    {
        PendingAck? pending;
        lock (_pendingLock)
        {
            pending = _pendingReplicas.Remove(id, out var entry) ? entry.Ack : null;
        }
        if (error != ErrorCode.None)
        {
            _self.Log.LogReplicaRefusedPush(_self.Id, id, System.Text.Encoding.UTF8.GetString(payload));
        }
        if (pending is not null)
        {
            ReplicaDone(pending);
        }
    }

    private void OnPeerLost(int peerId, string reason)
    {
        List<PendingAck> lost = new();
        lock (_pendingLock)
        {
            foreach (var (id, entry) in _pendingReplicas.Where(e => e.Value.PeerId == peerId).ToList()) // rare: a peer is lost
            {
                _pendingReplicas.Remove(id);
                lost.Add(entry.Ack);
            }
        }
        if (lost.Count > 0)
        {
            _self.Log.LogReplicaLost(_self.Id, peerId, reason, lost.Count);
        }
        foreach (var pending in lost)
        {
            ReplicaDone(pending);
        }
    }

    private void ReplicaDone(PendingAck pending)
    {
        if (Interlocked.Decrement(ref pending.Remaining) != 0)
        {
            return;
        }
        try
        {
            if (pending.SyncAcks is { } acks)
            {
                _answers.SendAcks(pending.Table, acks);
            }
            else if (pending.Request.Type == MessageType.PushPull)
            {
                _answers.SendValues(pending.Worker, pending.Request, pending.Table, KeyList.Of(pending.Keys.AsSpan(0, pending.KeyCount)));
            }
            else
            {
                _answers.SendAck(pending.Worker, pending.Request);
            }
        }
        catch (TransportException ex)
        {
            _self.Log.LogAcknowledgeFailed(_self.Id, pending.Worker.Peer, ex.Message);
        }
        finally
        {
            ReturnPending(pending);
        }
    }
}
