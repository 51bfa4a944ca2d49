namespace ParameterServer.Server.Replication;

/// <summary>
/// The pushes a server has applied, as primary or as replica, by (sender, dedup id): a push sent again after a
/// failover is recognised and only acknowledged, so it is never applied twice. Each sender keeps its last
/// <see cref="PerSender"/> ids (about 2 MB, allocated when the sender is first seen, so recording never allocates);
/// a resend arrives within a failover, long before that many newer pushes from the same worker reach this server.
/// </summary>
internal sealed class AppliedRequests
{
    public const int PerSender = 1 << 16;

    private readonly Lock _lock = new();
    private readonly Dictionary<int, SenderLog> _senders = new();

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
}
