namespace ParameterServer.Scheduler.Metadata;

/// <summary>
/// Where the scheduler keeps the job's metadata (nodes, tables, view number, work queue, checkpoint epoch, barriers)
/// so that a scheduler started again, or a standby, resumes the job. Writes are whole snapshots; a store makes each
/// one atomic (all of it or none of it is what the next <see cref="Load"/> sees).
/// </summary>
internal interface IMetadataStore
{
    /// <summary>Where the state lives, for log lines ("/var/ps/scheduler-state.json").</summary>
    string Location { get; }

    /// <summary>The last state saved, or null when none was (a new job). Throws PsException when it is unreadable.</summary>
    PersistedState? Load();

    /// <summary>
    /// Saves a snapshot atomically; throws IOException or UnauthorizedAccessException when it cannot, PsException
    /// (Conflict) when this scheduler is no longer the active one.
    /// </summary>
    void Save(PersistedState state);

    /// <summary>False once this scheduler may no longer act (a standby may have taken over); a local file: always true.</summary>
    bool IsActive => true;
}
