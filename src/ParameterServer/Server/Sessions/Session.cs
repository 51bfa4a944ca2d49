using ParameterServer.Core.Codecs;

namespace ParameterServer.Server.Sessions;

/// <summary>What a server knows about the node on the other end of one connection (kept in Connection.Tag).</summary>
internal sealed record Session(int NodeId, ReceiverKeyCache Keys)
{
    /// <summary>Per table, the rows last sent on this connection in filtered pull answers.</summary>
    public Dictionary<int, RowMemory> PulledRows { get; } = new();
}
