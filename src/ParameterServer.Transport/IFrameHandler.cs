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

    /// <summary>
    /// For a large frame whose payload has not fully arrived: where the payload should go instead of the receive
    /// buffer (exactly <see cref="FrameHeader.PayloadLength"/> bytes), so it lands where it is used without a copy.
    /// When this returns true the connection fills <paramref name="target"/> and then calls <see cref="EndDirect"/>
    /// (instead of <see cref="OnFrame"/>), with <c>received: false</c> if the connection failed first.
    /// </summary>
    bool TryBeginDirect(Connection connection, in FrameHeader header, out Span<byte> target)
    {
        target = default;
        return false;
    }

    /// <summary>The receive thread handled the frames of one read (before it flushes what they queued and blocks again).</summary>
    void OnBatchEnd(Connection connection)
    {
    }

    /// <summary>The payload promised by <see cref="TryBeginDirect"/> has arrived (or never will).</summary>
    void EndDirect(Connection connection, in FrameHeader header, bool received)
    {
    }
}
