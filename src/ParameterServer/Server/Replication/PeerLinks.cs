using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Server.Replication;

/// <summary>
/// This server's links to other servers: outbound connections for forwards and refills (one per peer, made on first
/// use; a peer that could not be reached is not tried again under the same view), the inbound connections peers forward
/// on, and the request ids of frames sent on them. Answers go to the replication room; a barrier
/// (<see cref="ConfirmApplied"/>) waits until a peer has handled everything sent to it so far.
/// </summary>
internal sealed class PeerLinks(LocalServer self, ViewGate gate)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;
    private readonly Lock _peersLock = new();
    private readonly Dictionary<int, PeerLink> _peers = new();
    private readonly Dictionary<int, PeerSlot> _slots = new(); // under _peersLock
    /// <summary>Connections on which other servers forward pushes to this one, by sender (until closed).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Connection, int> _inboundPeers = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, TaskCompletionSource> _appliedBarriers = new();
    private long _nextRequestId;

    /// <summary>A peer's answer to a frame this server sent it (request id, error, payload), other than a barrier's.</summary>
    public Action<ulong, ErrorCode, ReadOnlySpan<byte>>? Answered { get; set; }

    /// <summary>A peer's connection closed (peer id, reason).</summary>
    public Action<int, string>? Lost { get; set; }

    /// <summary>A fresh id for a frame sent to a peer (its answer carries it).</summary>
    public ulong NextRequestId() => (ulong)Interlocked.Increment(ref _nextRequestId);

    /// <summary>Notes a connection on which <paramref name="sender"/> forwards to this server (until it closes).</summary>
    public void NoteInbound(Connection connection, int sender) => _inboundPeers.TryAdd(connection, sender);

    public void ForgetInbound(Connection connection) => _inboundPeers.TryRemove(connection, out _);

    /// <summary>Waits (up to 2 s) until no open inbound connection from the <paramref name="lost"/> servers is left.</summary>
    public void WaitInboundClosed(HashSet<int> lost)
    {
        long deadline = Environment.TickCount64 + 2000;
        while (_inboundPeers.Any(p => lost.Contains(p.Value) && !p.Key.IsClosed) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(2);
        }
    }

    /// <summary>Per peer: the lock its connects take, whether it was declared dead, the view under which it was last unreachable.</summary>
    private sealed class PeerSlot
    {
        public CancellationTokenSource DeclaredDead { get; } = new();

        public uint? UnreachableUnder { get; set; }
    }

    /// <summary>This server's connection to another server, for forwarding pushes; answers are replica acks.</summary>
    internal sealed class PeerLink(PeerLinks links, int peerId) : IFrameHandler
    {
        public Connection Connection { get; set; } = null!;

        public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
        {
            if (header.Type == MessageType.Response)
            {
                links.OnAnswer(header.RequestId, header.Error, payload);
            }
        }

        public void OnClosed(Connection connection, string reason) => links.OnLost(peerId, reason);
    }

    /// <summary>
    /// The link to <paramref name="server"/>, connecting on first use. A connect holds only that peer's own lock, so a
    /// peer that does not answer (partitioned, hung) never holds up the links to the others, and a peer declared dead
    /// meanwhile ends it at once (<see cref="CloseDeclaredDead"/>).
    /// </summary>
    public PeerLink GetPeer(NodeInfo server)
    {
        uint view = _gate.Current?.Number ?? 0;
        PeerSlot slot;
        lock (_peersLock)
        {
            if (_peers.TryGetValue(server.Id, out var existing) && !existing.Connection.IsClosed)
            {
                return existing;
            }
            slot = SlotOf(server.Id);
        }
        lock (slot)
        {
            lock (_peersLock)
            {
                if (_peers.TryGetValue(server.Id, out var existing) && !existing.Connection.IsClosed)
                {
                    return existing; // another sender connected while this one waited
                }
            }
            if (slot.DeclaredDead.IsCancellationRequested)
            {
                throw new TransportException($"{server.Describe()} was declared dead");
            }
            // A server that could not be reached is not tried again under the same view: the scheduler is about to
            // publish one without it, and every push would otherwise wait for a connect attempt.
            if (slot.UnreachableUnder == view)
            {
                throw new TransportException($"{server.Describe()} was unreachable under view {view}");
            }
            var link = new PeerLink(this, server.Id);
            try
            {
                link.Connection = Connection.Connect(server.Host, server.Port, link, _self.Options.Transport.As(NodeRole.Server), _self.Log, server.Describe(), _self.Traffic, slot.DeclaredDead.Token);
            }
            catch (TransportException)
            {
                slot.UnreachableUnder = view;
                throw;
            }
            slot.UnreachableUnder = null;
            lock (_peersLock)
            {
                _peers[server.Id] = link;
            }
            return link;
        }
    }

    private PeerSlot SlotOf(int peerId)
    {
        if (!_slots.TryGetValue(peerId, out var slot))
        {
            _slots[peerId] = slot = new PeerSlot();
        }
        return slot;
    }

    /// <summary>
    /// Closes the links to servers <paramref name="view"/> declares dead, and ends connects to them in progress:
    /// whatever waits on them (forwards not yet acknowledged, senders waiting for room in a hung peer's queue) ends now,
    /// not at a timeout, and they are never connected to again. Failure is what the view says. Called before the view
    /// is installed: a forward stuck on a hung peer holds the update gate's read side.
    /// </summary>
    public void CloseDeclaredDead(ClusterView view)
    {
        List<(int Id, PeerLink? Link)> dead = [];
        lock (_peersLock)
        {
            foreach (var node in view.Nodes)
            {
                if (!node.Alive && !node.Left && node.Id != _self.Id)
                {
                    SlotOf(node.Id).DeclaredDead.Cancel();
                    dead.Add((node.Id, _peers.GetValueOrDefault(node.Id)));
                }
            }
        }
        foreach (var (id, link) in dead)
        {
            link?.Connection.Close($"server {id} was declared dead in view {view.Number}");
        }
    }

    public void ClosePeers()
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

    /// <summary>Waits (up to 10 s) until <paramref name="member"/> has handled every frame this server sent it so far: a stats request answered in order.</summary>
    public void ConfirmApplied(NodeInfo member)
    {
        ulong id = NextRequestId();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _appliedBarriers[id] = done;
        try
        {
            var peer = GetPeer(member);
            peer.Connection.Send(new FrameHeader { Type = MessageType.ServerStats, SenderId = _self.Id, RequestId = id, RowWidth = 1, ElementType = WireElementType.Float32 }, []);
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

    private void OnAnswer(ulong id, ErrorCode error, ReadOnlySpan<byte> payload)
    {
        if (_appliedBarriers.TryRemove(id, out var barrier))
        {
            barrier.TrySetResult();
            return;
        }
        Answered?.Invoke(id, error, payload);
    }

    private void OnLost(int peerId, string reason)
    {
        lock (_peersLock)
        {
            if (_peers.TryGetValue(peerId, out var link) && link.Connection.IsClosed)
            {
                _peers.Remove(peerId);
            }
        }
        Lost?.Invoke(peerId, reason);
    }
}
