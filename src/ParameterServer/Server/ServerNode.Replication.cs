using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ParameterServer.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Server;
using ParameterServer.Transport;

namespace ParameterServer;

/// <summary>
/// Chain replication of asynchronous tables: the primary of a block applies a push, forwards it to the block's other
/// copies (its successors on the ring) and acknowledges the worker only when every one of them has applied it. Every
/// copy records the push's (sender, dedup id), so a push a worker sends again after a failover is applied at most
/// once wherever it lands. Replicas apply the same operation (for the sum handler the copies are then identical; for
/// stateful optimizers concurrent pushes to different blocks may reach a replica in another order).
/// </summary>
public sealed partial class ServerNode
{
    private readonly AppliedRequests _applied = new();
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

    /// <summary>The dedup id of a push: its request id, or for a resend the id it was first sent with.</summary>
    private static ulong DedupId(in FrameHeader header) => (header.Flags & FrameFlags.Resend) != 0 ? (ulong)header.Round : header.RequestId;

    /// <summary>
    /// Applies an asynchronous push under replication: once per (sender, dedup id), then forwarded to the other copies of
    /// its blocks. Returns true when the acknowledgement is deferred until the replicas answer.
    /// </summary>
    private bool ApplyReplicated(Connection connection, in FrameHeader header, ClusterView view, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        if (!_applied.TryRecord(header.SenderId, DedupId(header)))
        {
            return false; // applied before (as primary or as a replica of the failed primary): acknowledge only
        }
        table.Apply(keys, values);
        var placement = view.PlacementOf(table.Info);
        int copies = placement.ChainLength - 1;
        // Successor slots per key (copies per key, -1 where a chain is shorter) and the distinct successors, in
        // buffers reused by this receive thread: the steady state allocates nothing.
        int needed = keys.Count * copies;
        var successors = t_successors is { } buffer && buffer.Length >= needed ? buffer : t_successors = new int[Math.Max(needed, 256)];
        var distinct = t_distinct ??= new List<int>();
        distinct.Clear();
        Span<int> chain = stackalloc int[placement.ChainLength];
        for (int i = 0; i < keys.Count; i++)
        {
            int n = placement.ChainOfBlock(table.Info.BlockOf(keys[i]), chain);
            for (int j = 1; j <= copies; j++)
            {
                int slot = j < n ? chain[j] : -1;
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
        var pending = RentPending(connection, header, table, keys, distinct.Count + 1); // + 1: this thread, until all are sent
        foreach (int slot in distinct)
        {
            var successor = view.Servers[slot];
            ulong id = (ulong)Interlocked.Increment(ref _nextReplicaRequestId);
            try
            {
                var peer = GetPeer(successor);
                lock (_pendingLock)
                {
                    _pendingReplicas[id] = (pending, successor.Id);
                }
                SendReplicate(peer.Connection, id, header, table, keys, values, successors.AsSpan(0, needed), copies, slot);
                Interlocked.Increment(ref _replicated);
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
        var header = new FrameHeader
        {
            Type = MessageType.Replicate,
            SenderId = Id,
            RequestId = id,
            Timestamp = request.Timestamp,
            ViewNumber = _view?.Number ?? 0,
            TableId = request.TableId,
            KeyCount = count,
            RowWidth = width,
            ElementType = request.ElementType,
            Aux = (uint)request.SenderId,
            Round = (long)DedupId(request),
            PayloadLength = checked(count * (sizeof(ulong) + (width * sizeof(float)))),
        };
        using var frame = peer.Reserve(header.FrameLength);
        header.Write(frame.Span);
        var keyOut = MemoryMarshal.Cast<byte, ulong>(frame.Span.Slice(FrameHeader.Size, count * sizeof(ulong)));
        var valueOut = MemoryMarshal.Cast<byte, float>(frame.Span[(FrameHeader.Size + (count * sizeof(ulong)))..]);
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
        frame.Commit();
    }

    /// <summary>A replica applies a forwarded push once per (worker, dedup id) and answers.</summary>
    private void HandleReplicate(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var tables = _tables;
        var table = (uint)header.TableId < (uint)tables.Length ? tables[header.TableId] : null;
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
        if (_applied.TryRecord((int)header.Aux, (ulong)header.Round))
        {
            table.Apply(keys, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)));
        }
        SendAck(connection, header);
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
            if (pending.Request.Type == MessageType.PushPull)
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
        lock (_peersLock)
        {
            if (_peers.TryGetValue(server.Id, out var existing) && !existing.Connection.IsClosed)
            {
                return existing;
            }
            var link = new PeerLink(this, server.Id);
            link.Connection = Connection.Connect(server.Host, server.Port, link, _options.Transport, _log, server.Describe());
            _peers[server.Id] = link;
            return link;
        }
    }

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
}
