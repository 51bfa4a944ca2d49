using ParameterServer.Protocol;

namespace ParameterServer.Transport;

/// <summary>
/// Receives whole frames on the connection's receive thread. The payload lives in the receive buffer and is
/// valid only during the call: handle it inline (small requests) or copy what must outlive it.
/// </summary>
internal interface IFrameHandler
{
    void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload);

    /// <summary>Called once when the connection closes, for whatever reason (<paramref name="reason"/> says which).</summary>
    void OnClosed(Connection connection, string reason);
}
