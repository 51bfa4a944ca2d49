using ParameterServer.Core.Codecs;
using System.Text;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Routing;

// Room: Routing. A worker's connection to one server and what the server remembers of this connection: the key lists
// it caches (key caching) and the rows it sent in filtered pull answers. Both live and die with the connection.
// Also carries side calls (stats, scans) that bypass the push/pull machinery. Frames are reported to ILinkEvents.

/// <summary>A worker's connection to one server; responses are handled on its receive thread.</summary>
internal sealed class ServerLink(ILinkEvents events, NodeInfo server) : IFrameHandler
{
    private readonly Lock _callsLock = new();
    private readonly Dictionary<int, RowMemory> _pulledRows = new();
    private readonly Dictionary<ulong, TaskCompletionSource<(FrameHeader Header, byte[] Payload)>> _calls = new();

    public NodeInfo Server { get; } = server;

    private long _answerTicks;
    private long _answers;

    /// <summary>Counts an answer to a request sent at <paramref name="sentAt"/> (a Stopwatch timestamp), for the server's answer time.</summary>
    public void CountAnswer(long sentAt)
    {
        if (sentAt != 0)
        {
            Interlocked.Add(ref _answerTicks, System.Diagnostics.Stopwatch.GetTimestamp() - sentAt);
            Interlocked.Increment(ref _answers);
        }
    }

    /// <summary>Answers counted so far and their summed time (Stopwatch ticks).</summary>
    public (long Answers, long Ticks) AnswerTotals => (Interlocked.Read(ref _answers), Interlocked.Read(ref _answerTicks));

    public Connection Connection
    {
        get => _connection;
        set
        {
            KeyCache.Clear(); // a new connection starts with an empty cache on the server
            lock (_pulledRows)
            {
                _pulledRows.Clear(); // and with nothing sent in filtered pull answers
            }
            _connection = value;
        }
    }

    private Connection _connection = null!;

    /// <summary>The key lists this worker believes the server holds (key caching).</summary>
    public SenderKeyCache KeyCache { get; } = new(SenderKeyCacheLists);

    /// <summary>The rows of a table this server sent in filtered pull answers on this connection, as the server remembers them.</summary>
    public RowMemory PulledRows(int tableId, int width, long capacityBytes)
    {
        lock (_pulledRows)
        {
            if (!_pulledRows.TryGetValue(tableId, out var rows))
            {
                _pulledRows[tableId] = rows = new RowMemory(width, capacityBytes);
            }
            return rows;
        }
    }

    /// <summary>A filtered answer was not taken in: this side no longer knows what the server remembers, so it starts over.</summary>
    public void ForgetPulledRows(int tableId)
    {
        lock (_pulledRows)
        {
            if (_pulledRows.TryGetValue(tableId, out var rows))
            {
                lock (rows)
                {
                    rows.Clear();
                }
            }
        }
    }

    /// <summary>Signatures a worker remembers per server; servers keep up to ServerOptions.KeyCacheBytes of keys per worker.</summary>
    public const int SenderKeyCacheLists = 1 << 16;

    public void OnFrame(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type != MessageType.Response || TryCompleteCall(header, payload))
        {
            return;
        }
        if (events.AnswersPromptly(header.TableId))
        {
            connection.AnswerArrived();
        }
        events.OnResponse(this, header, payload);
    }

    public void OnBatchEnd(Connection connection) => events.OnBatchEnd();

    public void OnClosed(Connection connection, string reason) => events.OnLinkClosed(this, reason);

    /// <summary>The call whose answer the receive thread is writing straight into the caller's memory (the data path's object).</summary>
    public object? DirectCall { get; set; }

    public bool TryBeginDirect(Connection connection, in FrameHeader header, out Span<byte> target) => events.TryBeginDirect(this, header, out target);

    public void EndDirect(Connection connection, in FrameHeader header, bool received)
    {
        if (events.AnswersPromptly(header.TableId))
        {
            connection.AnswerArrived();
        }
        events.EndDirect(this, received);
    }

    /// <summary>A request outside the push/pull machinery (stats, scans): bulk and rare, so it may allocate.</summary>
    public async Task<(FrameHeader Header, byte[] Payload)> CallAsync(FrameHeader request, string what, TimeSpan timeout, CancellationToken cancellationToken, byte[]? payload = null)
    {
        var tcs = new TaskCompletionSource<(FrameHeader, byte[])>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_callsLock)
        {
            _calls[request.RequestId] = tcs;
        }
        try
        {
            try
            {
                Connection.Send(request, payload ?? []);
            }
            catch (TransportException ex)
            {
                throw new PsException(PsErrorCode.ConnectionLost, $"cannot send {what} to {Server.Describe()}: {ex.Message}", ex);
            }
            var (header, answer) = await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            if (header.Error != ErrorCode.None)
            {
                throw new PsException((PsErrorCode)header.Error, $"{Server.Describe()} refused {what}: {Encoding.UTF8.GetString(answer)}");
            }
            return (header, answer);
        }
        catch (TimeoutException)
        {
            throw new PsException(PsErrorCode.Timeout, $"no answer from {Server.Describe()} to {what} within {timeout.TotalSeconds:0.#} s");
        }
        finally
        {
            lock (_callsLock)
            {
                _calls.Remove(request.RequestId);
            }
        }
    }

    public bool TryCompleteCall(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        TaskCompletionSource<(FrameHeader, byte[])>? tcs;
        lock (_callsLock)
        {
            if (_calls.Count == 0 || !_calls.Remove(header.RequestId, out tcs))
            {
                return false;
            }
        }
        tcs.TrySetResult((header, payload.ToArray()));
        return true;
    }

    public void FailCalls(string reason)
    {
        List<TaskCompletionSource<(FrameHeader, byte[])>> pending;
        lock (_callsLock)
        {
            pending = _calls.Values.ToList();
            _calls.Clear();
        }
        foreach (var tcs in pending)
        {
            tcs.TrySetException(new PsException(PsErrorCode.ConnectionLost, $"{Server.Describe()} closed the connection: {reason}"));
        }
    }
}
