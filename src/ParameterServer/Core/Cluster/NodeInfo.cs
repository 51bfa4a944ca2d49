using ParameterServer.Protocol;

namespace ParameterServer.Core.Cluster;

/// <summary>
/// A node as the scheduler sees it. <see cref="Rank"/> numbers servers and workers separately from 0.
/// A server owns <see cref="Points"/> virtual nodes of the ring now and is moving to <see cref="TargetPoints"/> (they
/// differ while its key ranges migrate: 0 to N while it joins, N to 0 while it drains); -1 means the job's default.
/// <see cref="Joined"/>: it joined the running job (it was not among the nodes the job started with).
/// <see cref="Left"/>: it left gracefully (drained), as opposed to dying.
/// </summary>
internal sealed record NodeInfo(int Id, NodeRole Role, int Rank, string Host, int Port, bool Alive, int Points = -1, int TargetPoints = -1, bool Joined = false, bool Left = false)
{
    public string Address => $"{Host}:{Port}";

    public string Describe() => Role switch
    {
        NodeRole.Server => $"server {Id} at {Host}:{Port}",
        NodeRole.Worker => $"worker {Id} (rank {Rank})",
        _ => $"{Role.ToString().ToLowerInvariant()} {Id}",
    };
}
