namespace ParameterServer.Cluster;

/// <summary>Role of a node in a job. Wire values: never renumber.</summary>
internal enum NodeRole : byte
{
    Scheduler = 0,
    Server = 1,
    Worker = 2,
    /// <summary>A tool (pserver status) that talks to the scheduler without joining the job.</summary>
    Observer = 3,
}

/// <summary>A node as the scheduler sees it. <see cref="Rank"/> numbers servers and workers separately from 0.</summary>
internal sealed record NodeInfo(int Id, NodeRole Role, int Rank, string Host, int Port, bool Alive)
{
    public string Address => $"{Host}:{Port}";

    public string Describe() => Role switch
    {
        NodeRole.Server => $"server {Id} at {Host}:{Port}",
        NodeRole.Worker => $"worker {Id} (rank {Rank})",
        _ => $"{Role.ToString().ToLowerInvariant()} {Id}",
    };
}
