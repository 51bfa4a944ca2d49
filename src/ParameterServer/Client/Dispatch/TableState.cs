using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Extensions;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns one declared table's call state on this worker: its bounded delay (tau and the window of its
// calls, changed under CallClock's lock), its next sync round (taken with the routes, see RouteTable.TakeWithRoutes),
// its traffic options and push filter. PsTable is the public handle on it.

/// <summary>What the data path knows of a table this worker declared.</summary>
internal sealed class TableState(TableInfo info, TableTraffic? traffic)
{
    private volatile int _tau = 4;

    /// <summary>The next push round of this worker on this table; taken together with the routes (a field, taken by ref).</summary>
    public long NextRound;

    public TableInfo Info { get; } = info;

    /// <summary>Key caching and value encoding of this table's calls; null when both are off.</summary>
    public TableTraffic? Traffic { get; } = traffic is { Active: true } ? traffic : null;

    /// <summary>Runs on every push of this worker to this table before it is sent; null: send everything.</summary>
    public IPushFilter? PushFilter { get; set; }

    /// <summary>Completion of this table's calls in issue order (bounded delay waits on it). Under CallClock's lock.</summary>
    public CompletionWindow Window { get; } = new();

    public int Tau => _tau;

    public string Name => Info.Name;

    /// <summary>4-byte words per row (<see cref="TableInfo.Words"/>): how the data path cuts values into rows.</summary>
    public int Width => Info.Words;

    public Consistency Consistency => _tau == int.MaxValue ? Consistency.Eventual : Consistency.BoundedDelay(_tau);

    /// <summary>Under CallClock's lock (<see cref="CallClock.SetTau"/>), which wakes callers held back by the old bound.</summary>
    public void SetTauUnderLock(int tau) => _tau = tau;
}
