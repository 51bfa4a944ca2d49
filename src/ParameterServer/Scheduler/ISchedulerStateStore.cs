namespace ParameterServer.Scheduler;

/// <summary>
/// Where a scheduler keeps the job's metadata (<see cref="SchedulerOptions.StateStore"/>) when it is not a local
/// directory: a store shared by an active scheduler and its standbys (etcd, for one). The scheduler writes whole
/// snapshots; the store decides whether this scheduler may still act.
/// </summary>
public interface ISchedulerStateStore
{
    /// <summary>Where the state lives, for log lines.</summary>
    string Location { get; }

    /// <summary>
    /// False once this scheduler may no longer act (its leadership lapsed: another may have taken over). The scheduler
    /// then sends nothing more and stops.
    /// </summary>
    bool IsActive { get; }

    /// <summary>The last snapshot saved, or null for a new job.</summary>
    byte[]? Load();

    /// <summary>
    /// Saves a snapshot atomically, only while this scheduler is the active one: otherwise throws
    /// <see cref="PsException"/> with <see cref="PsErrorCode.Conflict"/> (the scheduler stops); an unreachable store
    /// throws <see cref="IOException"/> (the scheduler retries).
    /// </summary>
    void Save(byte[] snapshot);
}
