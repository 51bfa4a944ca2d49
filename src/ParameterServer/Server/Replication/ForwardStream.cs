using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Server.Replication;

/// <summary>
/// One large push streamed to its other copies while it still arrives (cut-through): the Replicate frame that
/// forwards it goes out in <see cref="MessageType.ReplicatePart"/> frames as its bytes come in, so the hop to the
/// replicas overlaps the hop from the worker instead of following it. The replicas apply nothing until the commit
/// part, which <see cref="ChainReplicator.ForwardApplied"/> sends once this server applied the push (so exactly-once
/// and the ordering against refills are those of a whole forward); anything else ends in an abort part. Parts go
/// out as ordinary frames, interleaved with other traffic: no link is held while the push arrives. One per
/// receive thread, reused; only that thread uses it.
/// </summary>
internal sealed class ForwardStream(int self)
{
    private readonly List<Target> _targets = new();
    private FrameHeader _replicate; // the Replicate frame's header (RequestId: each target's own)
    private int _length; // bytes of the Replicate frame
    private int _sent; // bytes of it sent to every target

    private struct Target(int slot, Connection peer, ulong id)
    {
        public readonly int Slot = slot;
        public readonly Connection Peer = peer;
        public readonly ulong Id = id;
        public bool Ended; // failed, or committed
    }

    /// <summary>The view the targets were chosen by; null when no stream is open.</summary>
    public ClusterView? View { get; private set; }

    /// <summary>Starts a stream of the Replicate frame <paramref name="replicate"/> (its payload: the push's) to no target yet.</summary>
    public void Open(ClusterView view, in FrameHeader replicate)
    {
        View = view;
        _replicate = replicate;
        _length = replicate.FrameLength;
        _sent = 0;
        _targets.Clear();
    }

    public void AddTarget(int slot, Connection peer, ulong id) => _targets.Add(new Target(slot, peer, id));

    /// <summary>Whether every target has had every part so far on a link still open (else the push goes whole, on a new link).</summary>
    public bool Healthy
    {
        get
        {
            foreach (var target in _targets)
            {
                if (target.Ended || target.Peer.IsClosed)
                {
                    return false;
                }
            }
            return View is not null;
        }
    }

    /// <summary>Whether the stream goes to exactly these successors.</summary>
    public bool GoesTo(List<int> slots)
    {
        foreach (var target in _targets)
        {
            if (!slots.Contains(target.Slot))
            {
                return false;
            }
        }
        return _targets.Count == slots.Count;
    }

    /// <summary>Sends the next bytes of the push's payload to every target, as one part (the first also carries the Replicate header).</summary>
    public void Send(ReadOnlySpan<byte> payload)
    {
        Span<byte> head = stackalloc byte[FrameHeader.Size];
        bool first = _sent == 0;
        foreach (ref var target in CollectionsMarshal.AsSpan(_targets))
        {
            if (!target.Ended)
            {
                if (first)
                {
                    _replicate.RequestId = target.Id;
                    _replicate.Write(head);
                }
                target.Ended = !TrySendPart(target, ReplicatePartKind.Data, first ? head : default, payload);
            }
        }
        _sent += (first ? FrameHeader.Size : 0) + payload.Length;
    }

    /// <summary>The request id the copy at <paramref name="slot"/> answers the push with.</summary>
    public ulong IdOf(int slot) => TargetOf(slot).Id;

    /// <summary>Sends the commit part to the copy at <paramref name="slot"/> (the whole frame was sent): it applies the push and answers <see cref="IdOf"/>.</summary>
    public Connection Commit(int slot)
    {
        ref var target = ref TargetOf(slot);
        if (_sent != _length || target.Ended || !TrySendPart(target, ReplicatePartKind.Commit, default, default))
        {
            throw new TransportException($"{target.Peer.Peer} did not get the whole streamed push");
        }
        target.Ended = true; // Close sends it no abort
        return target.Peer;
    }

    /// <summary>Tells every target still streaming to discard the frame, and closes the stream.</summary>
    public void Close()
    {
        foreach (var target in _targets)
        {
            if (!target.Ended)
            {
                TrySendPart(target, ReplicatePartKind.Abort, default, default);
            }
        }
        _targets.Clear();
        View = null;
    }

    private ref Target TargetOf(int slot)
    {
        var targets = CollectionsMarshal.AsSpan(_targets);
        for (int i = 0; i < targets.Length; i++)
        {
            if (targets[i].Slot == slot)
            {
                return ref targets[i];
            }
        }
        throw new InvalidOperationException($"the stream does not go to slot {slot}");
    }

    private bool TrySendPart(in Target target, ReplicatePartKind kind, ReadOnlySpan<byte> head, ReadOnlySpan<byte> body)
    {
        var header = new FrameHeader
        {
            Type = MessageType.ReplicatePart,
            SenderId = self,
            RequestId = target.Id,
            Timestamp = _length,
            Round = _sent,
            Aux = (uint)kind,
            RowWidth = 1,
            ElementType = WireElementType.Float32,
            PayloadLength = head.Length + body.Length,
        };
        var peer = target.Peer;
        try
        {
            if (header.FrameLength >= Connection.LargeFrameBytes && peer.TryBeginExclusiveSend())
            {
                // The bytes go to the kernel from where they are (no copy into the batch buffer), header first.
                try
                {
                    Span<byte> bytes = stackalloc byte[FrameHeader.Size];
                    header.Write(bytes);
                    peer.SendExclusive(bytes, more: true);
                    peer.SendExclusive(head, more: !body.IsEmpty);
                    if (!body.IsEmpty)
                    {
                        peer.SendExclusive(body);
                    }
                    peer.CountSent(MessageType.ReplicatePart, header.FrameLength);
                }
                finally
                {
                    peer.EndExclusiveSend();
                }
                return true;
            }
            using var frame = peer.Reserve(header.FrameLength);
            header.Write(frame.Span);
            head.CopyTo(frame.Span[FrameHeader.Size..]);
            body.CopyTo(frame.Span[(FrameHeader.Size + head.Length)..]);
            frame.Commit();
            return true;
        }
        catch (TransportException)
        {
            return false; // the link is lost: the push goes whole (or the loss handler counts the copy as answered)
        }
    }
}
