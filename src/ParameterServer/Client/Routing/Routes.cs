using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Routing;

/// <summary>The view a worker routes by and its connection to each server of that view, swapped as one.</summary>
internal sealed class Routes(ClusterView view, ServerLink[] bySlot)
{
    public static readonly Routes None = new(null!, []);

    public ClusterView View { get; } = view;

    /// <summary>The link to <c>View.Servers[slot]</c>.</summary>
    public ServerLink[] BySlot { get; } = bySlot;
}

/// <summary>Where a sync table's pushes stand when the routes switch: its next round is the first cut by the new routes.</summary>
internal readonly record struct RoundMark(int TableId, string TableName, int Width, long Round);

/// <summary>
/// What a link reports to the data path (implemented by Dispatch's response handler; Routing does not know calls).
/// Called on the link's receive thread.
/// </summary>
internal interface ILinkEvents
{
    /// <summary>True when the servers answer requests on this table as soon as they arrive (async tables).</summary>
    bool AnswersPromptly(int tableId);

    void OnResponse(ServerLink link, in FrameHeader header, ReadOnlySpan<byte> payload);

    void OnBatchEnd();

    void OnLinkClosed(ServerLink link, string reason);

    bool TryBeginDirect(ServerLink link, in FrameHeader header, out Span<byte> target);

    void EndDirect(ServerLink link, bool received);
}
