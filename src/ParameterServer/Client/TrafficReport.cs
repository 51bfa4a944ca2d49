using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>Frames and bytes one node (or a sum of nodes) sent and received, by message type and by peer.</summary>
public sealed class TrafficReport
{
    internal TrafficReport(TrafficSnapshot snapshot) => Snapshot = snapshot;

    internal TrafficSnapshot Snapshot { get; }

    /// <summary>A report with no traffic.</summary>
    public static TrafficReport Empty { get; } = new(TrafficSnapshot.Empty);

    /// <summary>Bytes of every frame sent.</summary>
    public long BytesSent => Snapshot.BytesSent;

    /// <summary>Bytes of every frame received.</summary>
    public long BytesReceived => Snapshot.BytesReceived;

    /// <summary>The message types that were sent or received (lower-case names), with their four counts.</summary>
    public IEnumerable<(string Type, long MessagesOut, long BytesOut, long MessagesIn, long BytesIn)> Types() => Snapshot.Types();

    /// <summary>The JSON shape every report uses: totals, then counts by message type and by peer.</summary>
    public Dictionary<string, object> ToJson() => Snapshot.ToJson();

    /// <summary>The counts of several reports added up (a job's totals over its nodes).</summary>
    public static TrafficReport Sum(IEnumerable<TrafficReport> reports) => new(TrafficSnapshot.Sum(reports.Select(r => r.Snapshot)));
}
