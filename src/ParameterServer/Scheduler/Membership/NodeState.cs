using ParameterServer.Core.Cluster;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler.Membership;

/// <summary>What the scheduler knows of one node of the job (under the scheduler's lock).</summary>
internal sealed class NodeState(int id, NodeRole role, int rank, string host, int port, Connection? connection, string[] handlers, long lastSeen)
{
    public int Id { get; } = id;
    public NodeRole Role { get; } = role;
    public int Rank { get; } = rank;
    public string Host { get; } = host;
    public int Port { get; } = port;
    /// <summary>Null while a node of a resumed job has not rejoined yet.</summary>
    public Connection? Connection { get; set; } = connection;
    public string[] Handlers { get; } = handlers;
    /// <summary>Servers: the most table bytes it will hold (pserver server --max-memory-mb); 0 for no cap.</summary>
    public long MaxMemoryBytes { get; init; }
    /// <summary>When the scheduler last heard from the node, in milliseconds of the scheduler's clock (its options' TimeProvider).</summary>
    public long LastSeen { get; set; } = lastSeen;
    /// <summary>The node's traffic counters from its last heartbeat that carried them.</summary>
    public TrafficSnapshot? Traffic { get; set; }

    /// <summary>A worker's last report (progress, step and answer times, slow calls), sent with its traffic counters.</summary>
    public NodeReport? Report { get; set; }
    public bool Alive { get; set; } = true;
    public bool Finished { get; set; }
    public uint AckedView { get; set; }
    /// <summary>The newest view for which this server reported its new copies made (RefillDone).</summary>
    public uint RefilledView { get; set; }
    /// <summary>Servers: virtual nodes owned now and after the migration in progress (equal when none is).</summary>
    public int Points { get; set; } = -1;
    public int TargetPoints { get; set; } = -1;
    /// <summary>It joined the running job (was not among the nodes the job started with).</summary>
    public bool Joined { get; set; }
    /// <summary>It left gracefully: drained (a server whose ranges moved away, a worker that handed its work back).</summary>
    public bool Left { get; set; }
    /// <summary>A worker asked to leave: it gets no more work units and leaves after its current one.</summary>
    public bool Draining { get; set; }
    /// <summary>Barriers the job had passed when this worker joined: its n-th barrier is the job's BarrierBase + n.</summary>
    public long BarrierBase { get; set; }
    public NodeInfo Info => new(Id, Role, Rank, Host, Port, Alive, Points, TargetPoints, Joined, Left);
}
