using System.Text;
using ParameterServer.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Worker;

/// <summary>A worker's connection to one server; responses are handled on its receive thread.</summary>
internal sealed class ServerLink(PsClient client, int slot, NodeInfo server) : IFrameHandler
{
    private readonly Lock _statsLock = new();
    private (ulong RequestId, TaskCompletionSource<string> Result)? _stats;

    public int Slot { get; } = slot;

    public NodeInfo Server { get; } = server;

    public Connection Connection { get; set; } = null!;

    public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type != MessageType.Response || TryCompleteStats(header, payload))
        {
            return;
        }
        if (client.AnswersPromptly(header.TableId))
        {
            connection.AnswerArrived();
        }
        client.OnResponse(this, header, payload);
    }

    public void OnBatchEnd(Connection connection) => client.OnBatchEnd();

    public void OnClosed(Connection connection, string reason) => client.OnLinkClosed(this, reason);

    /// <summary>The pull whose answer the receive thread is writing straight into the caller's memory.</summary>
    public Slice? DirectSlice { get; set; }

    public bool TryBeginDirect(Connection connection, in FrameHeader header, out Span<byte> target) => client.TryBeginDirect(this, header, out target);

    public void EndDirect(Connection connection, in FrameHeader header, bool received)
    {
        if (client.AnswersPromptly(header.TableId))
        {
            connection.AnswerArrived();
        }
        client.EndDirect(this, received);
    }

    public async Task<string> CallStatsAsync(ulong requestId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var tcs = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_statsLock)
        {
            _stats = (requestId, tcs);
        }
        Connection.Send(new FrameHeader { Type = MessageType.ServerStats, RequestId = requestId, RowWidth = 1, ElementType = WireElementType.Float32 }, []);
        try
        {
            return await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, $"no stats from {Server.Describe()} within {timeout.TotalSeconds:0.#} s");
        }
    }

    public bool TryCompleteStats(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        lock (_statsLock)
        {
            if (_stats is not { } pending || pending.RequestId != header.RequestId)
            {
                return false;
            }
            _stats = null;
            pending.Result.TrySetResult(Encoding.UTF8.GetString(payload));
            return true;
        }
    }

    public void FailStats(string reason)
    {
        lock (_statsLock)
        {
            _stats?.Result.TrySetException(new PsException(PsErrorCode.ConnectionLost, $"{Server.Describe()} closed the connection: {reason}"));
            _stats = null;
        }
    }
}
