using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Core.Codecs;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>
/// Chain replication of asynchronous tables: the primary of a block applies a push, forwards it to the block's other
/// copies (its successors on the ring) and acknowledges the worker only when every one of them has applied it.
/// Every copy records each frame by (worker, request id). A worker that lost a primary sends the frame's keys again,
/// cut by the new view, naming the frame they replace and the view it was cut by (FrameFlags.Resend): a copy skips
/// the keys it held under that view if it has that frame recorded (it was a replica of the lost primary and got the
/// push), and applies the rest. So a push is applied once on every copy whichever way the failover went. Replicas
/// apply the same operation (exact for the sum handler; for stateful optimizers concurrent pushes to different
/// blocks may reach a replica in another order).
/// </summary>
public sealed partial class ServerNode
{
    private readonly AppliedRequests _applied = new();
    private readonly ReaderWriterLockSlim _forwardOrder = new(LockRecursionPolicy.NoRecursion);
    private readonly Lock _peersLock = new();
    private readonly Dictionary<int, PeerLink> _peers = new();
    private readonly Lock _pendingLock = new();
    private readonly Dictionary<ulong, (PendingAck Ack, int PeerId)> _pendingReplicas = new();
    private long _nextReplicaRequestId;
    private long _replicated;

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

    /// <summary>This server's connection to another server, for forwarding pushes; answers are replica acks.</summary>
    private sealed class PeerLink(ServerNode server, int peerId) : IFrameHandler
    {
        public Connection Connection { get; set; } = null!;

        public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
        {
            if (header.Type == MessageType.Response)
            {
                server.OnReplicaAnswer(header.RequestId, header.Error, payload);
            }
        }

        public void OnClosed(Connection connection, string reason) => server.OnPeerLost(peerId, reason);
    }

    /// <summary>The last views this server saw, by number: a resend names the view its keys were first cut by.</summary>
    private readonly Dictionary<uint, ClusterView> _recentViews = new();

    private void RememberView(ClusterView view)
    {
        lock (_recentViews)
        {
            _recentViews[view.Number] = view;
            if (_recentViews.Count > 64)
            {
                _recentViews.Remove(_recentViews.Keys.Min());
            }
        }
    }

    /// <summary>
    /// Applies a frame once: false when this frame (sender, request id) was applied before. A resend names the frame it
    /// replaces (<paramref name="predecessor"/>, cut by view <paramref name="predecessorView"/>): keys this server held
    /// under that view are skipped when it has that frame recorded, since it applied them then (returned in
    /// <paramref name="skipped"/>). <paramref name="asPrimary"/>: the frame came from the worker; with chains of two
    /// the resend's keys here are exactly those of the replaced frame, which is then recorded too, so a late copy of
    /// it from the lost primary is ignored.
    /// </summary>
    private bool ApplyOnce(int sender, ulong requestId, bool resend, ulong predecessor, uint predecessorView, bool asPrimary,
        TableStore table, KeyList keys, ReadOnlySpan<float> values, out HashSet<ulong>? skipped)
    {
        skipped = null;
        if (!_applied.TryRecord(sender, requestId))
        {
            return false;
        }
        if (!resend)
        {
            table.Apply(keys, values);
            return true;
        }
        ClusterView? old;
        lock (_recentViews)
        {
            _recentViews.TryGetValue(predecessorView, out old);
        }
        bool applied = _applied.Contains(sender, predecessor);
        if (asPrimary && old is not null && old.ChainLength <= 2)
        {
            _applied.TryRecord(sender, predecessor);
        }
        int oldSlot = old?.SlotOfServer(Id) ?? -1;
        if (!applied || old is null || oldSlot < 0 || old.FindTable(table.Info.Id) is null)
        {
            table.Apply(keys, values); // nothing of it applied here before
            return true;
        }
        // The rare path (a failover): apply only the keys this server did not hold under the predecessor's view.
        var placement = old.PlacementOf(table.Info);
        Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
        int width = table.Width;
        var keep = new List<ulong>();
        var keepValues = new List<float>();
        skipped = new HashSet<ulong>();
        for (int i = 0; i < keys.Count; i++)
        {
            int n = placement.ChainOfBlock(table.Info.BlockOf(keys[i]), chain);
            if (chain[..n].Contains(oldSlot))
            {
                skipped.Add(keys[i]);
            }
            else
            {
                keep.Add(keys[i]);
                keepValues.AddRange(values.Slice(i * width, width));
            }
        }
        Interlocked.Add(ref _resendRowsSkipped, skipped.Count);
        table.Apply(KeyList.Of(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(keep)), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(keepValues));
        return true;
    }

    private long _resendRowsSkipped;

    /// <summary>Whether <paramref name="server"/> held <paramref name="key"/> under view <paramref name="viewNumber"/> (false when the view is unknown).</summary>
    private bool HeldUnder(uint viewNumber, TableStore table, ulong key, int server)
    {
        ClusterView? old;
        lock (_recentViews)
        {
            _recentViews.TryGetValue(viewNumber, out old);
        }
        int slot = old?.SlotOfServer(server) ?? -1;
        if (old is null || slot < 0)
        {
            return false;
        }
        var placement = old.PlacementOf(table.Info);
        Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
        int n = placement.ChainOfBlock(table.Info.BlockOf(key), chain);
        return chain[..n].Contains(slot);
    }

    /// <summary>
    /// Applies an asynchronous push under replication (once, see <see cref="ApplyOnce"/>) and forwards it to the other
    /// copies of its blocks. Returns true when the acknowledgement is deferred until the replicas answer.
    /// </summary>
    private bool ApplyReplicated(Connection connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        // Applying and forwarding happen as one step with respect to refills (see Refill): a new replica gets every
        // push either inside its copy of a block or as a forward queued after that copy, never both, never neither.
        _forwardOrder.EnterReadLock();
        try
        {
            return ApplyAndForward(connection, header, table, keys, values);
        }
        finally
        {
            _forwardOrder.ExitReadLock();
        }
    }

    private bool ApplyAndForward(Connection connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        bool resend = (header.Flags & FrameFlags.Resend) != 0;
        if (!ApplyOnce(header.SenderId, header.RequestId, resend, (ulong)header.Round, header.Aux, asPrimary: true, table, keys, values, out var skipped))
        {
            return false; // this very frame was applied before: acknowledge only
        }
        return ForwardApplied(connection, header, table, keys, values, skipped, syncAcks: null);
    }

    /// <summary>
    /// Forwards what this primary applied to the other copies of its blocks (under the newest view); the acknowledgement
    /// (one worker's, or a sync round's <paramref name="syncAcks"/>) waits for them. Returns true when it does.
    /// </summary>
    private bool ForwardApplied(Connection? connection, in FrameHeader header, TableStore table, KeyList keys, ReadOnlySpan<float> values,
        HashSet<ulong>? skipped, List<SyncAggregator.PendingAck>? syncAcks)
    {
        var view = _view!; // the newest: a refill started for it copies blocks after every push forwarded by an older one
        var placement = view.PlacementOf(table.Info);
        int copies = placement.ChainLength - 1;
        if (copies <= 0)
        {
            return false;
        }
        // Successor slots per key (copies per key, -1 where a chain is shorter) and the distinct successors, in
        // buffers reused by this receive thread: the steady state allocates nothing.
        int needed = keys.Count * copies;
        var successors = t_successors is { } buffer && buffer.Length >= needed ? buffer : t_successors = new int[Math.Max(needed, 256)];
        var distinct = t_distinct ??= new List<int>();
        distinct.Clear();
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
                if (slot >= 0 && skipped is not null && skipped.Contains(keys[i]) && !HeldUnder(header.Aux, table, keys[i], view.Servers[slot].Id))
                {
                    slot = -1; // skipped here as applied before; a copy new to the chain got it in its refill from this server
                }
                successors[(i * copies) + j - 1] = slot;
                if (slot >= 0 && !distinct.Contains(slot))
                {
                    distinct.Add(slot);
                }
            }
        }
        if (distinct.Count == 0)
        {
            return false;
        }
        var pending = RentPending(connection!, header, table, keys, distinct.Count + 1); // + 1: this thread, until all are sent
        pending.SyncAcks = syncAcks;
        foreach (int slot in distinct)
        {
            var successor = view.Servers[slot];
            ulong id = (ulong)Interlocked.Increment(ref _nextReplicaRequestId);
            lock (_pendingLock)
            {
                _pendingReplicas[id] = (pending, successor.Id); // before connecting: a failed connect must count it as answered
            }
            try
            {
                var peer = GetPeer(successor);
                SendReplicate(peer.Connection, id, header, table, keys, values, successors.AsSpan(0, needed), copies, slot);
                Interlocked.Increment(ref _replicated);
                if (peer.Connection.IsClosed)
                {
                    // Closed while we registered: its loss handler may have run before our entry existed.
                    throw new TransportException($"{successor.Describe()} closed the connection");
                }
            }
            catch (TransportException ex)
            {
                // The successor is gone: the copies that remain have the push; the next view fills a new replica.
                _log.LogDebug("Server {Id}: cannot replicate to {Peer}: {Message}", Id, successor.Describe(), ex.Message);
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
        if (Interlocked.Decrement(ref pending.Remaining) == 0)
        {
            ReturnPending(pending);
            return false; // every replica answered already (or none could be reached): acknowledge now
        }
        return true;
    }

    /// <summary>
    /// A sync push resent after its server (Aux) was lost, with keys this server took over. If the lost server's
    /// aggregate of that round reached this copy, it is applied already: acknowledge only. Else it joins its round
    /// here, or, when that round is applied here already, is applied (and replicated) on its own.
    /// </summary>
    private void HandleSyncResend(Connection connection, in FrameHeader header, ClusterView view, TableStore table, SyncAggregator aggregator, KeyList keys, ReadOnlySpan<float> values)
    {
        if (_applied.Contains((int)header.Aux, (ulong)header.Round))
        {
            Interlocked.Add(ref _resendRowsSkipped, keys.Count); // the lost server's aggregate of this round is here
        }
        else if (aggregator.TryAddResent(connection, header, keys, values))
        {
            return; // acknowledged with its round
        }
        else
        {
            ApplyAlone(connection, header, view, table, keys, values);
            return;
        }
        if (header.Type == MessageType.PushPull)
        {
            SendValues(connection, header, table, keys);
        }
        else
        {
            SendAck(connection, header);
        }
    }

    /// <summary>A sync push whose round was applied here already: applied (and replicated) on its own, then acknowledged.</summary>
    private void ApplyAlone(Connection connection, in FrameHeader header, ClusterView view, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        var plain = header;
        plain.Flags &= ~FrameFlags.Resend; // from here on an ordinary push of this worker (recorded by its request id)
        if (view.ChainLength > 1 ? ApplyReplicated(connection, plain, table, keys, values) : ApplyPlain(table, keys, values))
        {
            return; // acknowledged when the replicas have it
        }
        if (header.Type == MessageType.PushPull)
        {
            SendValues(connection, header, table, keys);
        }
        else
        {
            SendAck(connection, header);
        }
    }

    /// <summary>Applies a push that is not replicated; under the forward lock so a checkpoint's snapshot sees it whole or not at all. False: acknowledge now.</summary>
    private bool ApplyPlain(TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        _forwardOrder.EnterReadLock();
        try
        {
            table.Apply(keys, values);
        }
        finally
        {
            _forwardOrder.ExitReadLock();
        }
        return false;
    }

    /// <summary>
    /// Sync rounds applied here: with replication their aggregate goes to the other copies first (replication after
    /// aggregation: one forward per round, however many workers pushed), then the workers are acknowledged.
    /// </summary>
    private void FinishRounds(TableStore table, List<SyncAggregator.RoundDone> rounds, bool lockHeld = false)
    {
        // Callers that completed the rounds under the forward lock pass it on (lockHeld): the aggregate then goes to the
        // copies of the view it was applied under, even if a new view is waiting to be installed.
        foreach (var round in rounds)
        {
            try
            {
                bool deferred = false;
                if (_view is { ChainLength: > 1 } && round.Count > 0)
                {
                    // Recorded by the replicas as (this server, round): a worker resending into a failover can tell it was applied.
                    var header = new FrameHeader { Type = MessageType.Push, SenderId = Id, RequestId = (ulong)round.Round, TableId = table.Info.Id, ElementType = table.Info.ElementType, RowWidth = table.Width };
                    if (!lockHeld)
                    {
                        _forwardOrder.EnterReadLock();
                    }
                    try
                    {
                        // A round's aggregate is a sum of pushes: not exact in fp16 even when each push was.
                        var pushCodec = t_forwardCodec;
                        t_forwardCodec = pushCodec is { } c ? c with { Quantization = Quantization.None } : null;
                        try
                        {
                            deferred = ForwardApplied(null, header, table, KeyList.Of(round.Keys.AsSpan(0, round.Count)), round.Values.AsSpan(0, round.Count * table.Width), null, round.Acks);
                        }
                        finally
                        {
                            t_forwardCodec = pushCodec;
                        }
                    }
                    finally
                    {
                        if (!lockHeld)
                        {
                            _forwardOrder.ExitReadLock();
                        }
                    }
                }
                if (!deferred)
                {
                    SendAcks(table, round.Acks);
                }
            }
            finally
            {
                round.Release();
            }
        }
    }

    [ThreadStatic]
    private static int[]? t_successors;

    [ThreadStatic]
    private static List<int>? t_distinct;

    private readonly Stack<PendingAck> _pendingPool = new();

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

    /// <summary>Forwards the keys whose chains include <paramref name="slot"/>, with their values, as one Replicate frame.</summary>
    private void SendReplicate(Connection peer, ulong id, in FrameHeader request, TableStore table, KeyList keys, ReadOnlySpan<float> values, ReadOnlySpan<int> successors, int copies, int slot)
    {
        int count = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            count += successors.Slice(i * copies, copies).Contains(slot) ? 1 : 0;
        }
        int width = table.Width;
        // Aux: the worker; Round: the worker's request id. A resend also carries what it replaces: Timestamp holds the
        // predecessor's request id and ViewNumber the view it was cut by (a replica does not route, so needs no view).
        bool resend = (request.Flags & FrameFlags.Resend) != 0;
        var header = new FrameHeader
        {
            Type = MessageType.Replicate,
            Flags = resend ? FrameFlags.Resend : FrameFlags.None,
            SenderId = Id,
            RequestId = id,
            Timestamp = resend ? request.Round : request.Timestamp,
            ViewNumber = resend ? request.Aux : _view?.Number ?? 0,
            TableId = request.TableId,
            KeyCount = count,
            RowWidth = width,
            ElementType = request.ElementType,
            Aux = (uint)request.SenderId,
            Round = (long)request.RequestId,
            PayloadLength = checked(count * (sizeof(ulong) + (width * sizeof(float)))),
        };
        int length = header.FrameLength;
        if (t_forwardCodec is { } codec && count >= TableTraffic.MinCachedKeys)
        {
            SendEncodedReplicate(peer, header, codec, keys, values, successors, copies, slot, width);
            return;
        }
        if (length >= Connection.LargeFrameBytes)
        {
            // A large forward is built in a pooled buffer of its own and sent from it: the connection's batch buffer
            // would otherwise grow to the frame's size (and be replaced) for every push.
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
            try
            {
                FillReplicate(buffer.AsSpan(0, length), header, keys, values, successors, copies, slot, width);
                peer.SendFrame(buffer, length);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
            return;
        }
        using var frame = peer.Reserve(length);
        FillReplicate(frame.Span, header, keys, values, successors, copies, slot, width);
        frame.Commit();
    }

    /// <summary>The value encoding of the push being served when it came encoded (set on its receive thread), else null.</summary>
    [ThreadStatic]
    private static CodecSpec? t_forwardCodec;

    /// <summary>
    /// How to forward a push that came encoded: its stages (zero suppression, lz), and its quantization only when that is
    /// fp16 or bf16, whose decoded values encode back to the same bits. Top-k and 1-bit are not: their values go whole.
    /// </summary>
    private static CodecSpec ForwardCodec(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if ((header.Flags & FrameFlags.Compressed) == 0)
        {
            return new CodecSpec(CodecStages.None, Quantization.None);
        }
        // The value section starts after the key section; its prefix names the stages and quantization.
        int keyBytes = (header.Flags & FrameFlags.KeysCached) != 0 ? KeySignature.Bytes
            : (header.Flags & FrameFlags.PackedKeys) != 0 ? Math.Max(0, KeyPacking.SectionLength(payload))
            : (int)DataPayload.KeySectionBytes(header.KeyCount, (header.Flags & FrameFlags.KeyRange) != 0);
        int maskBytes = (header.Flags & FrameFlags.Masked) != 0 ? 8 + ((header.KeyCount + 63) / 64 * 8) : 0;
        var section = payload[Math.Min(payload.Length, keyBytes + maskBytes)..];
        if (section.Length < 2)
        {
            return new CodecSpec(CodecStages.None, Quantization.None);
        }
        var quantization = (Quantization)section[1];
        return new CodecSpec((CodecStages)section[0] & (CodecStages.ZeroSuppress | CodecStages.Lz),
            quantization is Quantization.Float16 or Quantization.BFloat16 ? quantization : Quantization.None);
    }

    /// <summary>A forward with packed keys and encoded values (lossless: the replica decodes what this server applied).</summary>
    private static void SendEncodedReplicate(Connection peer, FrameHeader header, CodecSpec codec, KeyList keys, ReadOnlySpan<float> values,
        ReadOnlySpan<int> successors, int copies, int slot, int width)
    {
        int count = header.KeyCount;
        int length = header.FrameLength;
        var plain = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
        int keyBytes = count * sizeof(ulong);
        var wire = System.Buffers.ArrayPool<byte>.Shared.Rent(FrameHeader.Size + keyBytes + ValueCodec.MaxEncodedBytes(count * width, width) + 8);
        try
        {
            FillReplicate(plain.AsSpan(0, length), header, keys, values, successors, copies, slot, width);
            var plainKeys = MemoryMarshal.Cast<byte, ulong>(plain.AsSpan(FrameHeader.Size, keyBytes));
            var plainValues = MemoryMarshal.Cast<byte, float>(plain.AsSpan(FrameHeader.Size + keyBytes, count * width * sizeof(float)));
            int wireKeyBytes = KeyPacking.TryPack(plainKeys, wire.AsSpan(FrameHeader.Size, keyBytes));
            if (wireKeyBytes > 0)
            {
                header.Flags |= FrameFlags.PackedKeys;
            }
            else
            {
                plain.AsSpan(FrameHeader.Size, keyBytes).CopyTo(wire.AsSpan(FrameHeader.Size));
                wireKeyBytes = keyBytes;
            }
            int valueBytes = codec.IsNone ? 0 : ValueCodec.Encode(codec, plainValues, width, wire.AsSpan(FrameHeader.Size + wireKeyBytes));
            if (valueBytes > 0)
            {
                header.Flags |= FrameFlags.Compressed;
            }
            else
            {
                MemoryMarshal.AsBytes(plainValues).CopyTo(wire.AsSpan(FrameHeader.Size + wireKeyBytes));
                valueBytes = plainValues.Length * sizeof(float);
            }
            int padded = (valueBytes + 7) & ~7;
            wire.AsSpan(FrameHeader.Size + wireKeyBytes + valueBytes, padded - valueBytes).Clear();
            header.PayloadLength = wireKeyBytes + padded;
            if (header.FrameLength >= length)
            {
                peer.SendFrame(plain, length); // encoding did not pay
                return;
            }
            header.Write(wire);
            peer.SendFrame(wire, header.FrameLength);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(plain);
            System.Buffers.ArrayPool<byte>.Shared.Return(wire);
        }
    }

    /// <summary>A forward with packed keys or encoded values: decoded to the plain forward, then applied as one.</summary>
    private void HandleEncodedReplicate(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache keys)
    {
        string? problem = null;
        if ((header.Flags & (FrameFlags.KeysCached | FrameFlags.StoreKeys | FrameFlags.Masked)) != 0
            || WireEncoding.Decode(header, payload, keys, connection.MaxFrameBytes, out var plainHeader, out var plain, out problem) != WireEncoding.DecodeResult.Ok)
        {
            SendError(connection, header, ErrorCode.MalformedPayload, $"server {Id} cannot decode a forwarded push: {problem ?? "only packed keys and encoded values are allowed in forwards"}");
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

    private static void FillReplicate(Span<byte> frame, in FrameHeader header, KeyList keys, ReadOnlySpan<float> values, ReadOnlySpan<int> successors, int copies, int slot, int width)
    {
        int count = header.KeyCount;
        header.Write(frame);
        var keyOut = MemoryMarshal.Cast<byte, ulong>(frame.Slice(FrameHeader.Size, count * sizeof(ulong)));
        var valueOut = MemoryMarshal.Cast<byte, float>(frame[(FrameHeader.Size + (count * sizeof(ulong)))..]);
        if (count == keys.Count)
        {
            // Every key goes to this copy (the common case: one block per push): the values in one copy.
            for (int i = 0; i < count; i++)
            {
                keyOut[i] = keys[i];
            }
            values[..(count * width)].CopyTo(valueOut);
            return;
        }
        int n = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            if (successors.Slice(i * copies, copies).Contains(slot))
            {
                keyOut[n] = keys[i];
                values.Slice(i * width, width).CopyTo(valueOut.Slice(n * width, width));
                n++;
            }
        }
    }

    /// <summary>
    /// The table a peer server sends rows of. A server that just joined may get them before the scheduler's view that
    /// declares its tables (another connection): it waits for that view rather than drop the rows.
    /// </summary>
    private TableStore? TableFromPeer(int tableId)
    {
        long deadline = Environment.TickCount64 + 5000;
        while (true)
        {
            var tables = _tables;
            var table = (uint)tableId < (uint)tables.Length ? tables[tableId] : null;
            if ((table is not null && _view is not null) || _tableErrors.ContainsKey(tableId) || Environment.TickCount64 > deadline || _completion.Task.IsCompleted)
            {
                return table;
            }
            Thread.Sleep(1);
        }
    }

    /// <summary>A replica applies a forwarded push once per (worker, dedup id) and answers.</summary>
    private void HandleReplicate(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var table = TableFromPeer(header.TableId);
        if (table is null || header.RowWidth != table.Width || DataPayload.Validate(header) is not null)
        {
            SendError(connection, header, ErrorCode.MalformedPayload, $"server {Id} cannot apply a replicated push to table {header.TableId}");
            return;
        }
        var keys = DataPayload.Keys(header, payload);
        if (keys.FindUnsorted() >= 0)
        {
            SendError(connection, header, ErrorCode.KeysNotSorted, "replicated keys must be sorted");
            return;
        }
        _inboundPeers.TryAdd(connection, header.SenderId);
        ApplyOnce((int)header.Aux, (ulong)header.Round, (header.Flags & FrameFlags.Resend) != 0, (ulong)header.Timestamp, header.ViewNumber, asPrimary: false,
            table, keys, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)), out _);
        SendAck(connection, header);
    }

    private void OnReplicaAnswer(ulong id, ErrorCode error, ReadOnlySpan<byte> payload)
    {
        if (_appliedBarriers.TryRemove(id, out var barrier))
        {
            barrier.TrySetResult();
            return;
        }
        PendingAck? pending;
        lock (_pendingLock)
        {
            pending = _pendingReplicas.Remove(id, out var entry) ? entry.Ack : null;
        }
        if (error != ErrorCode.None)
        {
            _log.LogWarning("Server {Id}: a replica refused push {Request}: {Message}", Id, id, System.Text.Encoding.UTF8.GetString(payload));
        }
        if (pending is not null)
        {
            ReplicaDone(pending);
        }
    }

    private void OnPeerLost(int peerId, string reason)
    {
        lock (_peersLock)
        {
            if (_peers.TryGetValue(peerId, out var link) && link.Connection.IsClosed)
            {
                _peers.Remove(peerId);
            }
        }
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
            _log.LogInformation("Server {Id}: replica server {Peer} is gone ({Reason}); {Count} pushes are acknowledged on the remaining copies", Id, peerId, reason, lost.Count);
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
                SendAcks(pending.Table, acks);
            }
            else if (pending.Request.Type == MessageType.PushPull)
            {
                SendValues(pending.Worker, pending.Request, pending.Table, KeyList.Of(pending.Keys.AsSpan(0, pending.KeyCount)));
            }
            else
            {
                SendAck(pending.Worker, pending.Request);
            }
        }
        catch (TransportException ex)
        {
            _log.LogDebug("Server {Id}: could not acknowledge {Peer}: {Message}", Id, pending.Worker.Peer, ex.Message);
        }
        finally
        {
            ReturnPending(pending);
        }
    }

    private PeerLink GetPeer(NodeInfo server)
    {
        uint view = _view?.Number ?? 0;
        lock (_peersLock)
        {
            if (_peers.TryGetValue(server.Id, out var existing) && !existing.Connection.IsClosed)
            {
                return existing;
            }
            // A server that could not be reached is not tried again under the same view: the scheduler is about to
            // publish one without it, and every push would otherwise wait for a connect attempt.
            if (_unreachablePeers.TryGetValue(server.Id, out uint failedUnder) && failedUnder == view)
            {
                throw new TransportException($"{server.Describe()} was unreachable under view {view}");
            }
            var link = new PeerLink(this, server.Id);
            try
            {
                link.Connection = Connection.Connect(server.Host, server.Port, link, _options.Transport, _log, server.Describe(), Traffic);
            }
            catch (TransportException)
            {
                _unreachablePeers[server.Id] = view;
                throw;
            }
            _unreachablePeers.Remove(server.Id);
            _peers[server.Id] = link;
            return link;
        }
    }

    private readonly Dictionary<int, uint> _unreachablePeers = new(); // under _peersLock

    private void ClosePeers()
    {
        List<PeerLink> peers;
        lock (_peersLock)
        {
            peers = _peers.Values.ToList();
            _peers.Clear();
        }
        foreach (var p in peers)
        {
            p.Connection.Close("server stopped");
        }
    }

    private readonly Lock _refillLock = new();
    private Task _refills = Task.CompletedTask;
    private long _refillBlocksSent;
    private long _refillBlocksReceived;

    /// <summary>
    /// After a view change, copies every block this server is now primary for to the members of its chain that were
    /// not in it before (a replica lost with a server is replaced by the next one on the ring), in the background.
    /// Each block is copied under the forward lock, so pushes forwarded before the copy come before it on the
    /// connection and those applied after it are forwarded after it.
    /// </summary>
    private void StartRefill(ClusterView previous, ClusterView view)
    {
        if (view.ChainLength <= 1)
        {
            return;
        }
        lock (_refillLock)
        {
            // One view after the other: the scheduler reads "refilled for view V" as "and for every view before it".
            _refills = _refills.ContinueWith(_ =>
            {
                try
                {
                    Refill(previous, view);
                }
                catch (Exception ex) when (ex is TransportException or PsException)
                {
                    _log.LogWarning("Server {Id}: refilling replicas for view {View} stopped: {Message}", Id, view.Number, ex.Message);
                }
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    /// <summary>Connections on which other servers forward pushes to this one, by sender (until closed).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Connection, int> _inboundPeers = new();

    private void Refill(ClusterView previous, ClusterView view)
    {
        // A push the lost server forwarded here may still sit in this server's receive buffer: apply it before copying
        // blocks, or a new replica's copy would lack it while this server has it.
        var lost = previous.Servers.Select(s => s.Id).Where(id => view.SlotOfServer(id) < 0 && !view.Nodes.Any(n => n.Id == id && n.Left)).ToHashSet();
        long deadline = Environment.TickCount64 + 2000;
        while (_inboundPeers.Any(p => lost.Contains(p.Value) && !p.Key.IsClosed) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(2);
        }
        int mySlot = view.SlotOfServer(Id);
        if (mySlot < 0)
        {
            return;
        }
        long blocksSent = 0;
        var copiedTo = new HashSet<NodeInfo>();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var keys = new List<ulong>();
        var rows = new List<float>();
        foreach (var table in _tables)
        {
            if (table is null || previous.FindTable(table.Info.Id) is null)
            {
                continue; // a table new in this view has nothing to copy
            }
            var placement = view.PlacementOf(table.Info);
            var oldPlacement = previous.PlacementOf(table.Info);
            Span<int> chain = stackalloc int[placement.ChainLength];
            Span<int> oldChain = stackalloc int[Math.Max(1, oldPlacement.ChainLength)];
            foreach (long block in table.StoredBlocks())
            {
                int n = placement.ChainOfBlock(block, chain);
                if (n == 0 || chain[0] != mySlot)
                {
                    continue;
                }
                int oldN = oldPlacement.ChainOfBlock(block, oldChain);
                for (int j = 1; j < n; j++)
                {
                    var member = view.Servers[chain[j]];
                    int oldSlotOfMember = previous.SlotOfServer(member.Id);
                    if (oldSlotOfMember >= 0 && oldChain[..oldN].Contains(oldSlotOfMember))
                    {
                        continue; // it has the block already
                    }
                    CopyBlock(table, block, member, keys, rows);
                    copiedTo.Add(member);
                    blocksSent++;
                }
            }
        }
        // Each new copy confirms it applied everything sent before (frames on one connection are handled in order),
        // then the scheduler hears that this server's part of restoring the copies for this view is done.
        foreach (var member in copiedTo)
        {
            ConfirmApplied(member);
        }
        try
        {
            _scheduler?.Send(MessageType.RefillDone, [], round: view.Number);
        }
        catch (PsException)
        {
        }
        if (blocksSent > 0)
        {
            Interlocked.Add(ref _refillBlocksSent, blocksSent);
            _log.LogInformation("Server {Id}: copied {Blocks} blocks to new replicas for view {View} in {Ms:0} ms", Id, blocksSent, view.Number,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, TaskCompletionSource> _appliedBarriers = new();

    /// <summary>Waits (up to 10 s) until <paramref name="member"/> has handled every frame this server sent it so far: a stats request answered in order.</summary>
    private void ConfirmApplied(NodeInfo member)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextReplicaRequestId);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _appliedBarriers[id] = done;
        try
        {
            var peer = GetPeer(member);
            peer.Connection.Send(new FrameHeader { Type = MessageType.ServerStats, SenderId = Id, RequestId = id, RowWidth = 1, ElementType = WireElementType.Float32 }, []);
            if (!done.Task.Wait(TimeSpan.FromSeconds(10)))
            {
                throw new TransportException($"{member.Describe()} did not confirm its copies within 10 s");
            }
        }
        finally
        {
            _appliedBarriers.TryRemove(id, out _);
        }
    }

    /// <summary>Sends one block to a new replica: the copy and the frames carrying it are made under the forward lock.</summary>
    private void CopyBlock(TableStore table, long block, NodeInfo member, List<ulong> keys, List<float> rows)
    {
        var peer = GetPeer(member);
        int stride = table.RowStride;
        int rowBytes = sizeof(ulong) + (stride * sizeof(float));
        int rowsPerFrame = Math.Max(1, Math.Min(1 << 20, _options.Transport.MaxFrameBytes - FrameHeader.Size) / rowBytes);
        _forwardOrder.EnterWriteLock();
        try
        {
            keys.Clear();
            rows.Clear();
            table.SnapshotBlock(block, keys, rows);
            int sent = 0;
            do
            {
                int count = Math.Min(rowsPerFrame, keys.Count - sent);
                var header = new FrameHeader
                {
                    Type = MessageType.Refill,
                    SenderId = Id,
                    TableId = table.Info.Id,
                    KeyCount = count,
                    RowWidth = stride,
                    ElementType = table.Info.ElementType,
                    Round = block,
                    Timestamp = sent == 0 ? 1 : 0,
                    ViewNumber = _view?.Number ?? 0,
                    PayloadLength = count * rowBytes,
                };
                using var frame = peer.Connection.Reserve(header.FrameLength);
                header.Write(frame.Span);
                var keyOut = MemoryMarshal.Cast<byte, ulong>(frame.Span.Slice(FrameHeader.Size, count * sizeof(ulong)));
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(keys).Slice(sent, count).CopyTo(keyOut);
                var rowOut = MemoryMarshal.Cast<byte, float>(frame.Span[(FrameHeader.Size + (count * sizeof(ulong)))..]);
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows).Slice(sent * stride, count * stride).CopyTo(rowOut);
                frame.Commit();
                sent += count;
            }
            while (sent < keys.Count);
        }
        finally
        {
            _forwardOrder.ExitWriteLock();
        }
    }

    /// <summary>A new replica receives a block from its primary: the block is replaced by the copy.</summary>
    private void HandleRefill(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var table = TableFromPeer(header.TableId);
        if (table is null || header.RowWidth != table.RowStride || DataPayload.Validate(header) is { } problem && problem.Length > 0)
        {
            _log.LogWarning("Server {Id}: ignored a malformed refill of table {Table} from server {Sender}", Id, header.TableId, header.SenderId);
            return;
        }
        var keys = DataPayload.Keys(header, payload);
        try
        {
            table.WriteBlockRows(header.Round, keys, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)), clearFirst: header.Timestamp == 1);
        }
        catch (ArgumentException ex)
        {
            _log.LogWarning("Server {Id}: ignored a refill from server {Sender}: {Message}", Id, header.SenderId, ex.Message);
            return;
        }
        if (header.Timestamp == 1)
        {
            Interlocked.Increment(ref _refillBlocksReceived);
        }
    }
}
