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

    /// <summary>
    /// For a large frame whose payload has not fully arrived: take the payload piece by piece as it arrives instead of
    /// whole (a server applies a large push while the rest is still on the wire, from a chunk that stays in cache).
    /// <paramref name="first"/> holds the payload's first bytes (at least <see cref="Connection.ChunkedPrefixBytes"/> of
    /// it, or all of it if it is shorter). When this returns true the handler has taken <paramref name="first"/>; the
    /// connection then calls <see cref="OnChunk"/> for each further piece, in order, and <see cref="EndChunks"/> once.
    /// </summary>
    bool TryBeginChunks(Connection connection, in FrameHeader header, ReadOnlySpan<byte> first) => false;

    /// <summary>The next piece of the payload of a frame accepted by <see cref="TryBeginChunks"/>; valid only during the call.</summary>
    void OnChunk(Connection connection, in FrameHeader header, ReadOnlySpan<byte> chunk)
    {
    }

    /// <summary>The last piece of a chunked frame was handed over (<paramref name="received"/>), or the connection failed first.</summary>
    void EndChunks(Connection connection, in FrameHeader header, bool received)
    {
    }

    /// <summary>The payload promised by <see cref="TryBeginDirect"/> has arrived (or never will).</summary>
    void EndDirect(Connection connection, in FrameHeader header, bool received)
    {
    }
}
