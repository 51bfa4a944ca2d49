using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

/// <summary>A connection's handler that keeps every frame it gets and says when the expected number arrived or the connection closed.</summary>
internal sealed class FrameRecorder : IFrameHandler
{
    public readonly List<(FrameHeader Header, byte[] Payload)> Frames = new();
    public readonly TaskCompletionSource<string> Closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public int Expected = int.MaxValue;
    public readonly TaskCompletionSource AllReceived = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        lock (Frames)
        {
            Frames.Add((header, payload.ToArray()));
            if (Frames.Count >= Expected)
            {
                AllReceived.TrySetResult();
            }
        }
    }

    public void OnClosed(Connection connection, string reason) => Closed.TrySetResult(reason);
}
