using ParameterServer.Protocol;

namespace ParameterServer.Server.Replication;

/// <summary>
/// The pushes a server has applied, as primary or as replica, by (sender, dedup id): a push sent again after a
/// failover is recognised and only acknowledged, so it is never applied twice. Each sender keeps its last
/// <see cref="PerSender"/> ids (about 2 MB, allocated when the sender is first seen, so recording never allocates);
/// a resend arrives within a failover, long before that many newer pushes from the same worker reach this server.
/// A resend names the frame it replaces (its predecessor). Keys a resend applies are claimed for the predecessor, so
/// the predecessor's own copy arriving late from the lost primary (with three or more copies it may come after the
/// resend), or another resend of it, skips them. Deciding and recording happen under one lock, so two frames
/// racing on different connections cannot both apply a key.
/// </summary>
internal sealed class AppliedRequests
{
    public const int PerSender = 1 << 16;

    /// <summary>Predecessors whose claimed keys are kept; a late copy arrives within a failover, far sooner than this many more.</summary>
    private const int ClaimedFrames = 4096;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, SenderLog> _senders = new();
    private readonly Dictionary<(int Sender, ulong Id), HashSet<ulong>> _claimed = new(); // rare: failovers only
    private readonly Queue<(int Sender, ulong Id)> _claimedOrder = new();

    private sealed class SenderLog
    {
        public readonly HashSet<ulong> Ids = new(PerSender + 1);
        public readonly ulong[] Order = new ulong[PerSender]; // ring: the oldest id is evicted first
        public long Count;
    }

    public bool Contains(int sender, ulong id)
    {
        lock (_lock)
        {
            return _senders.TryGetValue(sender, out var log) && log.Ids.Contains(id);
        }
    }

    /// <summary>Records the id unless it is there already; returns false when it was (a duplicate). Atomic.</summary>
    public bool TryRecord(int sender, ulong id)
    {
        lock (_lock)
        {
            return Record(sender, id);
        }
    }

    /// <summary>
    /// Records an original frame (not a resend); false for a duplicate. <paramref name="skip"/>: its keys that resends of
    /// it applied here first (null when none did, the common case).
    /// </summary>
    public bool TryRecord(int sender, ulong id, KeyList keys, out HashSet<ulong>? skip)
    {
        skip = null;
        lock (_lock)
        {
            if (!Record(sender, id))
            {
                return false;
            }
            if (_claimed.Count > 0 && _claimed.TryGetValue((sender, id), out var claimed))
            {
                skip = new HashSet<ulong>();
                for (int i = 0; i < keys.Count; i++)
                {
                    if (claimed.Contains(keys[i]))
                    {
                        skip.Add(keys[i]);
                    }
                }
            }
            return true;
        }
    }

    /// <summary>
    /// Records a resend of <paramref name="predecessor"/>; false for a duplicate. A key is skipped (returned in
    /// <paramref name="skip"/>, null when none is) when the predecessor was applied here and this server held the key
    /// then (<paramref name="heldBefore"/>, per key; null: none), or when an earlier resend of it applied the key here.
    /// Every other key is claimed for the predecessor: the caller applies it.
    /// </summary>
    public bool TryRecordResend(int sender, ulong id, ulong predecessor, KeyList keys, bool[]? heldBefore, out HashSet<ulong>? skip)
    {
        skip = null;
        lock (_lock)
        {
            if (!Record(sender, id))
            {
                return false;
            }
            bool applied = _senders[sender].Ids.Contains(predecessor);
            if (!_claimed.TryGetValue((sender, predecessor), out var claimed))
            {
                _claimed[(sender, predecessor)] = claimed = new HashSet<ulong>();
                _claimedOrder.Enqueue((sender, predecessor));
                if (_claimedOrder.Count > ClaimedFrames)
                {
                    _claimed.Remove(_claimedOrder.Dequeue());
                }
            }
            for (int i = 0; i < keys.Count; i++)
            {
                if ((applied && heldBefore is not null && heldBefore[i]) || !claimed.Add(keys[i]))
                {
                    (skip ??= new HashSet<ulong>()).Add(keys[i]);
                }
            }
            return true;
        }
    }

    private bool Record(int sender, ulong id)
    {
        if (!_senders.TryGetValue(sender, out var log))
        {
            _senders[sender] = log = new SenderLog();
        }
        if (!log.Ids.Add(id))
        {
            return false;
        }
        int slot = (int)(log.Count++ % PerSender);
        if (log.Count > PerSender)
        {
            log.Ids.Remove(log.Order[slot]);
        }
        log.Order[slot] = id;
        return true;
    }
}
