namespace ParameterServer.Core.Cluster;

/// <summary>
/// How long this node may still act as a member of the job (serve, apply, acknowledge) without hearing from the
/// scheduler: fencing for a node that was frozen (SIGSTOP, a VM pause, a long GC) or cut off and may have been declared
/// dead meanwhile. The scheduler echoes every heartbeat with its heartbeat timeout T; since it declares a node dead
/// only after T of silence from it, and the echo proves it heard a heartbeat sent at time s, it cannot have declared
/// this node dead before s + T. The lease runs to s + <see cref="Share"/> x T, ending before that on this node's clock.
/// A node past its lease refuses work until an echo renews it; one that was declared dead is refused when it rejoins
/// and exits, so a resumed node never serves.
/// </summary>
internal sealed class SchedulerLease(TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>The part of the scheduler's heartbeat timeout a lease lasts: the rest covers clock rates and delivery.</summary>
    public const double Share = 0.75;

    /// <summary>How long a restarted scheduler waits for the nodes of the job it resumes to rejoin before it declares any dead.</summary>
    public static readonly TimeSpan RestartGrace = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long past its lease a node that is still connected waits for an echo before it leaves the job: as long as
    /// it waits for a scheduler that closed the connection to come back (<see cref="ControlChannel.ReconnectWindow"/>).
    /// A scheduler that hangs for less stalls the job, which then goes on.
    /// </summary>
    public static readonly TimeSpan GiveUpAfter = ControlChannel.ReconnectWindow;

    private const int Slots = 64;
    private readonly long[] _sentAt = new long[Slots]; // heartbeat sequence % Slots -> TickCount64 when sent
    private long _until = long.MaxValue; // no lease is needed before the node has joined (no echo yet)
    private int _lapseLogged; // 1 once a refusal logged the current lapse, 0 while the lease is held
    private ulong _sequence;

    private long NowMs => (long)_time.GetElapsedTime(0, _time.GetTimestamp()).TotalMilliseconds;

    /// <summary>Whether the node may act now; otherwise how long ago the lease ended (ms).</summary>
    public bool IsHeld(out long expiredForMs)
    {
        long now = NowMs;
        long until = Volatile.Read(ref _until);
        expiredForMs = Math.Max(0, now - until);
        return now < until;
    }

    /// <summary>The sequence number of a heartbeat about to be sent, noting when.</summary>
    public ulong NextHeartbeat()
    {
        ulong sequence = Interlocked.Increment(ref _sequence);
        Volatile.Write(ref _sentAt[sequence % Slots], NowMs);
        return sequence;
    }

    /// <summary>The scheduler echoed heartbeat <paramref name="sequence"/>; its timeout is <paramref name="timeoutMs"/>.</summary>
    public void Renew(ulong sequence, int timeoutMs)
    {
        if (sequence == 0 || sequence > Volatile.Read(ref _sequence) || Volatile.Read(ref _sequence) - sequence >= Slots)
        {
            return; // unknown or too old to know when it was sent
        }
        long until = Volatile.Read(ref _sentAt[sequence % Slots]) + (long)(timeoutMs * Share);
        long current = Volatile.Read(ref _until);
        if (current == long.MaxValue || until > current)
        {
            Volatile.Write(ref _until, until);
        }
        Volatile.Write(ref _lapseLogged, 0);
    }

    /// <summary>
    /// The scheduler's connection closed. If the lease still runs, the scheduler died (one that declares this node dead
    /// does so only after the lease ended): a restarted one waits <paramref name="rejoinWindow"/> for the nodes to
    /// rejoin before it declares any dead, so the lease may run that long. An ended lease stays ended.
    /// </summary>
    public void SchedulerClosed(TimeSpan rejoinWindow)
    {
        long now = NowMs;
        long until = Volatile.Read(ref _until);
        if (until != long.MaxValue && now < until)
        {
            Volatile.Write(ref _until, Math.Max(until, now + (long)rejoinWindow.TotalMilliseconds));
        }
    }

    /// <summary>True once per lapse: the first refusal after the lease ended logs it.</summary>
    public bool FirstRefusal()
    {
        return Interlocked.Exchange(ref _lapseLogged, 1) == 0;
    }
}
