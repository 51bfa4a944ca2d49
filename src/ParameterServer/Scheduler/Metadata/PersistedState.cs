using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.JobControl;

namespace ParameterServer.Scheduler.Metadata;

/// <summary>One node as the scheduler's metadata records it.</summary>
internal sealed record PersistedNode(int Id, NodeRole Role, int Rank, string Host, int Port, bool Alive, bool Finished, string[] Handlers,
    int Points = -1, int TargetPoints = -1, bool Joined = false, bool Left = false, bool Draining = false, long BarrierBase = 0);

/// <summary>The scheduler's metadata: what a restarted scheduler needs to resume the job.</summary>
internal sealed record PersistedState(int Format, uint View, bool Ready, int NextNodeId, long Epoch, PersistedNode[] Nodes, TableInfo[] Tables, PersistedWork? Work, long Barriers = 0,
    uint LastServerLossView = 0, int ServersLostSinceHealthy = 0);
