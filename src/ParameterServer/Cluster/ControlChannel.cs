using System.Text;
using Microsoft.Extensions.Logging;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Cluster;

/// <summary>A reply on the control plane: its header and a copy of its payload.</summary>
internal sealed record ControlReply(FrameHeader Header, byte[] Payload);

/// <summary>
/// A node's connection to the scheduler: request/response calls with timeouts, plus a callback for frames the
/// scheduler sends on its own (views, shutdown). Control plane only, so it may allocate.
/// </summary>
internal sealed class ControlChannel : IFrameHandler, IDisposable
{
    private readonly Dictionary<ulong, TaskCompletionSource<ControlReply>> _calls = new();
    private readonly Lock _lock = new();
    private readonly Action<FrameHeader, byte[]> _onPush;
    private readonly Action<string>? _onClosed;
    private Connection? _connection;
    private ulong _nextRequestId;

    private ControlChannel(string address, Action<FrameHeader, byte[]> onPush, Action<string>? onClosed)
    {
        Address = address;
        _onPush = onPush;
        _onClosed = onClosed;
    }

    public string Address { get; }

    public int SenderId { get; set; } = -1;

    public bool IsClosed => _connection?.IsClosed ?? true;

    /// <summary>Connects to the scheduler at "host:port" or throws <see cref="PsException"/> (Unreachable) saying so.</summary>
    public static ControlChannel Connect(string address, TransportOptions options, ILogger? logger, Action<FrameHeader, byte[]> onPush, Action<string>? onClosed = null)
    {
        var (host, port) = Endpoints.Parse(address, "--scheduler");
        var channel = new ControlChannel(address, onPush, onClosed);
        try
        {
            channel._connection = Connection.Connect(host, port, channel, options, logger, $"the scheduler");
        }
        catch (TransportException ex)
        {
            throw new PsException(PsErrorCode.Unreachable, $"{ex.Message}. Is `pserver scheduler` running there? Check --scheduler / PS_SCHEDULER.", ex);
        }
        return channel;
    }

    /// <summary>Asks a scheduler for its current view without joining the job (pserver status).</summary>
    public static async Task<ClusterView> FetchViewAsync(string address, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var channel = Connect(address, new TransportOptions { ConnectTimeout = timeout }, null, (_, _) => { });
        var reply = await channel.CallAsync(MessageType.Status, ReadOnlyMemory<byte>.Empty, "a status request", timeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        return ClusterView.Read(reply.Payload);
    }

    /// <summary>Sends a request and waits for its response; throws <see cref="PsException"/> on error, close or timeout.</summary>
    public async Task<ControlReply> CallAsync(MessageType type, ReadOnlyMemory<byte> payload, string what, TimeSpan timeout, int tableId = 0, long round = 0, uint aux = 0, CancellationToken cancellationToken = default)
    {
        var connection = _connection ?? throw new InvalidOperationException("not connected");
        var tcs = new TaskCompletionSource<ControlReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        ulong id;
        lock (_lock)
        {
            id = ++_nextRequestId;
            _calls[id] = tcs;
        }
        try
        {
            Send(type, payload.Span, id, tableId, round, aux);
            var reply = await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            if (reply.Header.Error != ErrorCode.None)
            {
                throw new PsException((PsErrorCode)reply.Header.Error, $"the scheduler refused {what}: {Encoding.UTF8.GetString(reply.Payload)}");
            }
            return reply;
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, $"no answer from the scheduler at {Address} to {what} within {timeout.TotalSeconds:0.#} s");
        }
        finally
        {
            lock (_lock)
            {
                _calls.Remove(id);
            }
        }
    }

    /// <summary>
    /// Sends a heartbeat every <paramref name="interval"/> until the channel closes or <paramref name="stopped"/> says so,
    /// from its own thread: a busy thread pool must not make a live node look dead.
    /// </summary>
    public void StartHeartbeats(TimeSpan interval, Func<bool> stopped)
    {
        var thread = new Thread(() =>
        {
            while (!stopped() && !IsClosed)
            {
                try
                {
                    Send(MessageType.Heartbeat, []);
                }
                catch (PsException)
                {
                    break;
                }
                Thread.Sleep(interval);
            }
        })
        { IsBackground = true, Name = "ps-heartbeat" };
        thread.Start();
    }

    /// <summary>Sends a frame that needs no answer (heartbeat, view acknowledgement).</summary>
    public void Send(MessageType type, ReadOnlySpan<byte> payload, ulong requestId = 0, int tableId = 0, long round = 0, uint aux = 0)
    {
        var connection = _connection ?? throw new InvalidOperationException("not connected");
        var header = new FrameHeader { Type = type, SenderId = SenderId, RequestId = requestId, TableId = tableId, Round = round, Aux = aux, RowWidth = 1, ElementType = WireElementType.Float32 };
        try
        {
            connection.Send(header, payload);
        }
        catch (TransportException ex)
        {
            throw new PsException(PsErrorCode.ConnectionLost, $"cannot reach the scheduler at {Address}: {ex.Message}", ex);
        }
    }

    public void Reply(in FrameHeader request, ReadOnlySpan<byte> payload)
    {
        var header = new FrameHeader { Type = MessageType.Response, SenderId = SenderId, RequestId = request.RequestId, RowWidth = 1, ElementType = WireElementType.Float32 };
        _connection?.Send(header, payload);
    }

    void IFrameHandler.OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type == MessageType.Response)
        {
            TaskCompletionSource<ControlReply>? tcs;
            lock (_lock)
            {
                _calls.Remove(header.RequestId, out tcs);
            }
            tcs?.TrySetResult(new ControlReply(header, payload.ToArray()));
            return;
        }
        _onPush(header, payload.ToArray());
    }

    void IFrameHandler.OnClosed(Connection connection, string reason)
    {
        List<TaskCompletionSource<ControlReply>> pending;
        lock (_lock)
        {
            pending = _calls.Values.ToList();
            _calls.Clear();
        }
        foreach (var tcs in pending)
        {
            tcs.TrySetException(new PsException(PsErrorCode.ConnectionLost, $"lost the scheduler at {Address}: {reason}"));
        }
        _onClosed?.Invoke(reason);
    }

    public void Dispose() => _connection?.Close("closed by this node");
}

internal static class Endpoints
{
    /// <summary>Parses "host:port"; the error names the option the value came from.</summary>
    public static (string Host, int Port) Parse(string address, string optionName)
    {
        int colon = address.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(address.AsSpan(colon + 1), out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"{optionName} must be HOST:PORT with a port in 1..65535, got '{address}'");
        }
        return (address[..colon], port);
    }
}
