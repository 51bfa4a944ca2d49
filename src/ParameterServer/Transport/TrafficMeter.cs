using ParameterServer.Protocol;

namespace ParameterServer.Transport;

/// <summary>
/// Frames and bytes one node sent and received, by message type and by peer. Each connection counts into its own
/// <see cref="PeerTraffic"/> (no counter is shared between connections, so receive threads do not contend); the
/// node's totals are summed when asked. Connections that closed keep their counts.
/// </summary>
internal sealed class TrafficMeter
{
    private readonly List<PeerTraffic> _peers = new();

    public PeerTraffic Add(string label)
    {
        var peer = new PeerTraffic(label);
        lock (_peers)
        {
            _peers.Add(peer);
        }
        return peer;
    }

    /// <summary>Totals by message type and by peer label (connections to the same peer are summed).</summary>
    public TrafficSnapshot Snapshot()
    {
        var byType = new long[PeerTraffic.Types * PeerTraffic.Fields];
        var byPeer = new Dictionary<string, long[]>();
        lock (_peers)
        {
            foreach (var peer in _peers)
            {
                if (!byPeer.TryGetValue(peer.Label, out var totals))
                {
                    byPeer[peer.Label] = totals = new long[PeerTraffic.Fields];
                }
                for (int type = 0; type < PeerTraffic.Types; type++)
                {
                    for (int field = 0; field < PeerTraffic.Fields; field++)
                    {
                        long value = Interlocked.Read(ref peer.Counts[type * PeerTraffic.Fields + field]);
                        byType[type * PeerTraffic.Fields + field] += value;
                        totals[field] += value;
                    }
                }
            }
        }
        return new TrafficSnapshot(byType, byPeer);
    }
}

/// <summary>One connection's counters: for each message type, messages and bytes out and in (whole frames, header included).</summary>
internal sealed class PeerTraffic(string label)
{
    public const int Types = 64;
    public const int Fields = 4;
    public const int MessagesOut = 0;
    public const int BytesOut = 1;
    public const int MessagesIn = 2;
    public const int BytesIn = 3;

    public readonly long[] Counts = new long[Types * Fields];

    public string Label { get; set; } = label;

    public void CountOut(byte type, long bytes)
    {
        int at = (type & (Types - 1)) * Fields;
        Interlocked.Increment(ref Counts[at + MessagesOut]);
        Interlocked.Add(ref Counts[at + BytesOut], bytes);
    }

    public void CountIn(byte type, long bytes)
    {
        int at = (type & (Types - 1)) * Fields;
        Interlocked.Increment(ref Counts[at + MessagesIn]);
        Interlocked.Add(ref Counts[at + BytesIn], bytes);
    }
}

/// <summary>What a <see cref="TrafficMeter"/> counted up to one moment.</summary>
internal sealed class TrafficSnapshot(long[] byType, Dictionary<string, long[]> byPeer)
{
    private readonly long[] _byType = byType;

    public static readonly TrafficSnapshot Empty = new(new long[PeerTraffic.Types * PeerTraffic.Fields], new());

    public IReadOnlyDictionary<string, long[]> ByPeer { get; } = byPeer;

    public long Get(string type, int field) => Get(Enum.Parse<MessageType>(type, ignoreCase: true), field);

    internal long Get(MessageType type, int field) => _byType[((int)type & (PeerTraffic.Types - 1)) * PeerTraffic.Fields + field];

    public long Total(int field)
    {
        long sum = 0;
        for (int type = 0; type < PeerTraffic.Types; type++)
        {
            sum += _byType[type * PeerTraffic.Fields + field];
        }
        return sum;
    }

    public long BytesSent => Total(PeerTraffic.BytesOut);

    public long BytesReceived => Total(PeerTraffic.BytesIn);

    /// <summary>The message types that were sent or received, with their four counts.</summary>
    public IEnumerable<(string Type, long MessagesOut, long BytesOut, long MessagesIn, long BytesIn)> Types()
    {
        for (int type = 0; type < PeerTraffic.Types; type++)
        {
            int at = type * PeerTraffic.Fields;
            if (_byType[at + PeerTraffic.MessagesOut] + _byType[at + PeerTraffic.MessagesIn] > 0)
            {
                yield return (((MessageType)type).ToString().ToLowerInvariant(), _byType[at], _byType[at + 1], _byType[at + 2], _byType[at + 3]);
            }
        }
    }

    /// <summary>Adds another node's counts (a job's totals over its nodes).</summary>
    public static TrafficSnapshot Sum(IEnumerable<TrafficSnapshot> snapshots)
    {
        var byType = new long[PeerTraffic.Types * PeerTraffic.Fields];
        var byPeer = new Dictionary<string, long[]>();
        foreach (var s in snapshots)
        {
            for (int i = 0; i < byType.Length; i++)
            {
                byType[i] += s._byType[i];
            }
            foreach (var (label, counts) in s.ByPeer)
            {
                if (!byPeer.TryGetValue(label, out var totals))
                {
                    byPeer[label] = totals = new long[PeerTraffic.Fields];
                }
                for (int f = 0; f < PeerTraffic.Fields; f++)
                {
                    totals[f] += counts[f];
                }
            }
        }
        return new TrafficSnapshot(byType, byPeer);
    }

    /// <summary>Compact binary form (for heartbeats): the nonzero types, then the peers.</summary>
    public void Write(PayloadWriter w)
    {
        var used = Enumerable.Range(0, PeerTraffic.Types)
            .Where(t => _byType[t * PeerTraffic.Fields + PeerTraffic.MessagesOut] + _byType[t * PeerTraffic.Fields + PeerTraffic.MessagesIn] > 0).ToList();
        w.WriteInt32(used.Count);
        foreach (int type in used)
        {
            w.WriteByte((byte)type);
            for (int f = 0; f < PeerTraffic.Fields; f++)
            {
                w.WriteInt64(_byType[type * PeerTraffic.Fields + f]);
            }
        }
        w.WriteInt32(ByPeer.Count);
        foreach (var (label, counts) in ByPeer)
        {
            w.WriteString(label);
            foreach (long c in counts)
            {
                w.WriteInt64(c);
            }
        }
    }

    public static TrafficSnapshot Read(ref PayloadReader r)
    {
        var byType = new long[PeerTraffic.Types * PeerTraffic.Fields];
        int types = r.ReadCount(PeerTraffic.Types);
        for (int i = 0; i < types; i++)
        {
            int at = (r.ReadByte() & (PeerTraffic.Types - 1)) * PeerTraffic.Fields;
            for (int f = 0; f < PeerTraffic.Fields; f++)
            {
                byType[at + f] = r.ReadInt64();
            }
        }
        var byPeer = new Dictionary<string, long[]>();
        int peers = r.ReadCount(1 << 16);
        for (int i = 0; i < peers; i++)
        {
            string label = r.ReadString(1024);
            var counts = new long[PeerTraffic.Fields];
            for (int f = 0; f < PeerTraffic.Fields; f++)
            {
                counts[f] = r.ReadInt64();
            }
            byPeer[label] = counts;
        }
        return new TrafficSnapshot(byType, byPeer);
    }

    /// <summary>Reads back what <see cref="ToJson"/> wrote (a server's stats, added up across servers by the job's report).</summary>
    public static TrafficSnapshot FromJson(System.Text.Json.JsonElement traffic)
    {
        var byType = new long[PeerTraffic.Types * PeerTraffic.Fields];
        foreach (var type in traffic.GetProperty("by_type").EnumerateObject())
        {
            int at = ((int)Enum.Parse<MessageType>(type.Name, ignoreCase: true) & (PeerTraffic.Types - 1)) * PeerTraffic.Fields;
            Fields(type.Value).CopyTo(byType.AsSpan(at, PeerTraffic.Fields));
        }
        var byPeer = traffic.GetProperty("by_peer").EnumerateObject().ToDictionary(peer => peer.Name, peer => Fields(peer.Value));
        return new TrafficSnapshot(byType, byPeer);

        static long[] Fields(System.Text.Json.JsonElement counts) =>
        [
            counts.GetProperty("messages_sent").GetInt64(), counts.GetProperty("bytes_sent").GetInt64(),
            counts.GetProperty("messages_received").GetInt64(), counts.GetProperty("bytes_received").GetInt64(),
        ];
    }

    /// <summary>The JSON shape every report uses: totals, then "traffic" by message type and by peer.</summary>
    public Dictionary<string, object> ToJson() => new()
    {
        ["bytes_sent"] = BytesSent,
        ["bytes_received"] = BytesReceived,
        ["messages_sent"] = Total(PeerTraffic.MessagesOut),
        ["messages_received"] = Total(PeerTraffic.MessagesIn),
        ["by_type"] = Types().ToDictionary(t => t.Type, t => new Dictionary<string, long>
        {
            ["messages_sent"] = t.MessagesOut,
            ["bytes_sent"] = t.BytesOut,
            ["messages_received"] = t.MessagesIn,
            ["bytes_received"] = t.BytesIn,
        }),
        ["by_peer"] = ByPeer.ToDictionary(p => p.Key, p => new Dictionary<string, long>
        {
            ["messages_sent"] = p.Value[PeerTraffic.MessagesOut],
            ["bytes_sent"] = p.Value[PeerTraffic.BytesOut],
            ["messages_received"] = p.Value[PeerTraffic.MessagesIn],
            ["bytes_received"] = p.Value[PeerTraffic.BytesIn],
        }),
    };
}
