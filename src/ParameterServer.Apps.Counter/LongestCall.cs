using System.Diagnostics;
using ParameterServer.Client.Diagnostics;

namespace ParameterServer.Apps.Counter;

/// <summary>The longest time any call of a worker waited for its answer (the counter's "stall_ms"). No allocation per call.</summary>
internal sealed class LongestCall : ICallObserver
{
    private const int Slots = 1 << 14; // calls in flight at once, at most (deeper ones are not timed)
    private readonly long[] _issuedAt = new long[Slots];
    private readonly long[] _timestampOf = new long[Slots];
    private long _longest;

    public TimeSpan Longest => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _longest));

    public void OnIssued(long timestamp)
    {
        int slot = (int)(timestamp & (Slots - 1));
        Volatile.Write(ref _issuedAt[slot], Stopwatch.GetTimestamp());
        Volatile.Write(ref _timestampOf[slot], timestamp);
    }

    public void OnCompleted(long timestamp, PsException? error)
    {
        int slot = (int)(timestamp & (Slots - 1));
        long issued = Volatile.Read(ref _issuedAt[slot]);
        if (Volatile.Read(ref _timestampOf[slot]) != timestamp || issued == 0)
        {
            return;
        }
        long took = Stopwatch.GetTimestamp() - issued;
        long longest;
        while (took > (longest = Interlocked.Read(ref _longest)) && Interlocked.CompareExchange(ref _longest, took, longest) != longest)
        {
        }
    }
}
