namespace ParameterServer.Protocol;

/// <summary>
/// What a peer may send by the role it proved in the handshake (a job without a secret proves none and checks
/// nothing). The accepting side checks every frame: a worker cannot send server-to-server messages, a tool only asks.
/// Messages only the scheduler sends travel on the connections nodes open to it, so they never arrive at a listener.
/// </summary>
internal static class RolePolicy
{
    /// <summary>Whether a server's data port takes <paramref name="type"/> from a peer proven as <paramref name="role"/>.</summary>
    public static bool ServerAccepts(NodeRole role, MessageType type) => role switch
    {
        NodeRole.Server => true,
        NodeRole.Worker => type is not (MessageType.Replicate or MessageType.ReplicatePart or MessageType.Refill),
        NodeRole.Reader => type is MessageType.ServerStats or MessageType.Heartbeat, // the read-only token: statistics, no parameters
        _ => type is MessageType.ServerStats or MessageType.Scan or MessageType.Heartbeat, // tools read
    };

    /// <summary>Whether the scheduler takes <paramref name="type"/> from a peer proven as <paramref name="role"/>.</summary>
    public static bool SchedulerAccepts(NodeRole role, MessageType type) => role switch
    {
        NodeRole.Server or NodeRole.Worker => true,
        NodeRole.Reader => type is MessageType.Register or MessageType.Status or MessageType.Heartbeat,
        _ => type is MessageType.Register or MessageType.Status or MessageType.Drain or MessageType.Rebalance or MessageType.Heartbeat,
    };

    /// <summary>The refusal, for the error answer and the log.</summary>
    public static string Refusal(string node, NodeRole role, MessageType type, string peer) =>
        $"{node} refuses {type} frames from {peer}, which proved the role {role.ToString().ToLowerInvariant()}";
}
