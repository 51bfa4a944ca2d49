using Microsoft.Extensions.Logging;
using ParameterServer.Client.Diagnostics;

namespace ParameterServer.Client.Failover;

// Room: Failover. Owns how long the last failover took and when it ended: from the first call left without a server
// to the first answer to a resent call.

/// <summary>Times failovers.</summary>
internal sealed class FailoverTiming(int nodeId, ILogger log)
{
    private long _lostAt; // Stopwatch timestamp: when calls were first left without a server, 0 when none are
    private long _lastFailoverTicks = -1;
    private long _lastFailoverAnsweredUnixMs = -1;

    /// <summary>When (Unix ms, wall clock) the last failover completed: comparable across processes on one machine.</summary>
    public long LastAnsweredUnixMs => Interlocked.Read(ref _lastFailoverAnsweredUnixMs);

    /// <summary>How long the last failover took: from losing a server with calls outstanding to the first answer to a resent call.</summary>
    public TimeSpan? Last => Interlocked.Read(ref _lastFailoverTicks) is var t && t >= 0 ? TimeSpan.FromTicks(t) : null;

    public void NoteCallsLost() => Interlocked.CompareExchange(ref _lostAt, System.Diagnostics.Stopwatch.GetTimestamp(), 0);

    /// <param name="resentSoFar">Slices resent so far (for the log).</param>
    public void NoteResentAnswered(long resentSoFar)
    {
        long lost = Interlocked.Exchange(ref _lostAt, 0);
        if (lost == 0)
        {
            return;
        }
        var took = System.Diagnostics.Stopwatch.GetElapsedTime(lost);
        Interlocked.Exchange(ref _lastFailoverTicks, took.Ticks);
        Interlocked.Exchange(ref _lastFailoverAnsweredUnixMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        log.LogFailedOver(nodeId, took.TotalMilliseconds, resentSoFar);
    }
}
