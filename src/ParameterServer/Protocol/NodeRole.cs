namespace ParameterServer.Protocol;

/// <summary>Role of a node in a job. Wire values: never renumber.</summary>
internal enum NodeRole : byte
{
    Scheduler = 0,
    Server = 1,
    Worker = 2,
    /// <summary>A tool (pserver status) that talks to the scheduler without joining the job.</summary>
    Observer = 3,
    /// <summary>A tool holding only the job's read-only token (<see cref="Transport.JobSecret.ReadTokenOf"/>): status and statistics, nothing else.</summary>
    Reader = 4,
}
