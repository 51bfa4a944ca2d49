using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>
/// A worker's handle on a running job: registers with the scheduler, connects to every server, declares
/// tables and runs barriers. Pushes and pulls go through <see cref="PsTable"/>; every call returns a
/// timestamp at once, <see cref="Wait(long)"/> blocks until it is done.
/// </summary>
/// <example>
/// <code>
/// await using var ps = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = "127.0.0.1:9700" });
/// var w = await ps.DeclareTableAsync(new TableSpec("weights") { Handler = "sgd:lr=0.1" });
/// long t = w.Push(keys, gradients);
/// w.Pull(keys, values, after: [t]);
/// </code>
/// </example>
public sealed partial class PsClient : IAsyncDisposable, ISliceSource
{
    private readonly WorkerOptions _options;
    private readonly ILogger _log;
    private readonly object _gate = new(); // clocks, consistency, parked operations; Monitor.Wait/PulseAll
    private readonly CompletionWindow _clock = new();
    private readonly Dictionary<long, PsException> _failures = new();
    private readonly Dictionary<long, TaskCompletionSource> _waiters = new();
    private readonly List<Operation> _parked = new();
    private readonly Stack<Operation> _operationPool = new();
    private readonly Lock _sliceLock = new();
    private readonly Dictionary<ulong, Slice> _inflight = new();
    private readonly Stack<Slice> _slicePool = new();
    private readonly Dictionary<string, PsTable> _tables = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _shutdown = new();
    private ControlChannel _scheduler = null!;
    private volatile Routing _routes = Routing.None;
    private volatile ClusterView? _view;
    private long _nextRequestId;
    private long _barrierSequence;
    private long _waitTicks;
    private string? _shutdownReason;

    private PsClient(WorkerOptions options, ILoggerFactory loggers)
    {
        options.Validate();
        _options = options;
        _log = loggers.CreateLogger("worker");
    }

    /// <summary>This worker's node id (unique in the job).</summary>
    public int NodeId { get; private set; } = -1;

    /// <summary>True when this worker joined a running job (<see cref="WorkerOptions.Join"/>) rather than being one it started with.</summary>
    public bool Joined => _options.Join;

    /// <summary>
    /// True when this worker joined the running job (<see cref="WorkerOptions.Join"/>) after the others passed their
    /// first barrier: it missed the start, and its barriers line up with the others' next ones.
    /// </summary>
    public bool JoinedLate { get; private set; }

    /// <summary>True once the job asked this worker to leave (pserver drain): it gets no more work units; its app should finish.</summary>
    public bool DrainRequested { get; private set; }

    /// <summary>This worker's rank among the workers: 0 .. <see cref="WorkerCount"/> - 1.</summary>
    public int Rank { get; private set; } = -1;

    /// <summary>Workers in the job when it started.</summary>
    public int WorkerCount { get; private set; }

    /// <summary>Live servers in the current view.</summary>
    public int ServerCount => _view?.Servers.Count ?? 0;

    /// <summary>Cancelled when the scheduler ends the job (or is lost); long-running apps should stop then.</summary>
    public CancellationToken ShutdownRequested => _shutdown.Token;

    /// <summary>Frames and bytes in and out of this worker, by message type and peer (servers and the scheduler).</summary>
    internal TrafficMeter TrafficMeter { get; } = new();

    /// <summary>Sends this worker's traffic counters to the scheduler (before a barrier, so that rank 0 can add them up after it).</summary>
    internal void PublishTraffic() => _scheduler.PublishTraffic();

    /// <summary>Every node's traffic counters as last published to the scheduler, by node id.</summary>
    internal Task<Dictionary<int, TrafficSnapshot>> FetchTrafficAsync(CancellationToken cancellationToken) =>
        _scheduler.FetchTrafficAsync(_options.RequestTimeout, cancellationToken);

    /// <summary>Bytes this worker sent to and received from servers.</summary>
    public (long Sent, long Received) Traffic
    {
        get
        {
            lock (_everyLink)
            {
                return (_everyLink.Sum(l => l.Connection.BytesSent), _everyLink.Sum(l => l.Connection.BytesReceived));
            }
        }
    }

    /// <summary>Time callers spent blocked: in Wait, and in calls held back by their table's consistency.</summary>
    public TimeSpan WaitTime => TimeSpan.FromTicks(Interlocked.Read(ref _waitTicks));

    internal void AddWaitTime(long startTimestamp) =>
        Interlocked.Add(ref _waitTicks, System.Diagnostics.Stopwatch.GetElapsedTime(startTimestamp).Ticks);

    /// <summary>Sees every call get its timestamp and complete (benchmarks measure latency with it); null on the normal path.</summary>
    internal ICallObserver? Observer { get; set; }

    /// <summary>
    /// True when the servers answer requests on this table as soon as they arrive (async tables). Answers to sync
    /// pushes wait for the other workers, so they are not counted as awaited answers (Connection.ExpectAnswer): a frame
    /// queued behind them would wait for the slowest worker. Every answer echoes its request's table id.
    /// </summary>
    internal bool AnswersPromptly(int tableId) =>
        (uint)tableId < (uint)_promptTables.Length && _promptTables[tableId];

    private volatile bool[] _promptTables = [];

    internal ClusterView View => _view ?? throw new InvalidOperationException("not connected");

    /// <summary>
    /// Registers with the scheduler, waits until the job has all its servers and workers, and connects to
    /// the servers. Throws <see cref="PsException"/> (Unreachable, Timeout, Conflict) with the cause.
    /// </summary>
    public static async Task<PsClient> ConnectAsync(WorkerOptions options, ILoggerFactory? loggers = null, CancellationToken cancellationToken = default)
    {
        var client = new PsClient(options, loggers ?? NullLoggerFactory.Instance);
        try
        {
            await client.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return client;
    }

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        _scheduler = ControlChannel.Connect(_options.Scheduler, _options.Transport, _log, OnSchedulerFrame, OnSchedulerLost, TrafficMeter);
        var w = new PayloadWriter();
        ControlMessages.WriteRegister(w, NodeRole.Worker, "", 0, [], _options.Join);
        var reply = await _scheduler.CallAsync(MessageType.Register, w.WrittenSpan.ToArray(), "the registration of this worker", _options.StartupTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        int[] fields = ControlMessages.ReadInts(reply.Payload, 4);
        NodeId = fields[0];
        Rank = fields[1];
        JoinedLate = fields[3] > 0;
        _scheduler.SenderId = NodeId;
        _scheduler.EnableReconnect(ControlChannel.ReconnectWindow, () =>
        {
            lock (_heldUnits)
            {
                return ControlMessages.Ints([NodeId, (int)NodeRole.Worker, .. _heldUnits]);
            }
        });
        var heartbeat = TimeSpan.FromMilliseconds(fields[2]);
        StartHeartbeats(heartbeat);
        try
        {
            await _ready.Task.WaitAsync(_options.StartupTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var v = _view;
            throw new PsException(PsErrorCode.Timeout,
                $"the job did not start within {_options.StartupTimeout.TotalSeconds:0} s: the scheduler at {_options.Scheduler} expects {v?.ExpectedServers} servers and {v?.ExpectedWorkers} workers, {v?.Servers.Count} servers and {v?.Workers.Count} workers have registered");
        }
        var view = View;
        WorkerCount = view.Workers.Count;
        try
        {
            UpdateRoutes(view, startup: true);
        }
        catch (TransportException ex)
        {
            CloseLinks("startup failed");
            throw new PsException(PsErrorCode.Unreachable, $"worker {NodeId}: {ex.Message}", ex);
        }
        var scanner = new Thread(ScanTimeouts) { IsBackground = true, Name = "ps-timeouts" };
        scanner.Start();
        _log.LogInformation("Worker {Id} (rank {Rank} of {Workers}) connected to {Servers} servers", NodeId, Rank, WorkerCount, view.Servers.Count);
    }

    private void StartHeartbeats(TimeSpan interval) => _scheduler.StartHeartbeats(interval, () => _shutdown.IsCancellationRequested);

    private void OnSchedulerFrame(FrameHeader header, byte[] payload)
    {
        switch (header.Type)
        {
            case MessageType.View:
                var view = ClusterView.Read(payload);
                bool newer;
                lock (_gate)
                {
                    newer = _view is null || view.Number > _view.Number;
                    if (newer)
                    {
                        _view = view;
                    }
                    Monitor.PulseAll(_gate);
                }
                _scheduler.Reply(header, []);
                if (newer && _routes != Routing.None)
                {
                    OnNewView(); // off the scheduler's receive thread: it may connect and resend
                }
                if (view.Ready)
                {
                    _ready.TrySetResult();
                }
                break;
            case MessageType.Drain:
                DrainRequested = true;
                _log.LogWarning("Worker {Id} is drained: it takes no more work units and leaves after its current one", NodeId);
                break;
            case MessageType.Shutdown:
                EnterShutdown("the scheduler ended the job");
                _scheduler.Dispose(); // no reconnecting to a scheduler that is going away
                break;
        }
    }

    private void OnSchedulerLost(string reason) => EnterShutdown($"lost the scheduler at {_options.Scheduler}: {reason}");

    private void EnterShutdown(string reason)
    {
        lock (_gate)
        {
            _shutdownReason ??= reason;
            Monitor.PulseAll(_gate);
        }
        _ready.TrySetException(new PsException(PsErrorCode.ShuttingDown, reason));
        try
        {
            _shutdown.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Declares a table (or gets the one already declared under this name, which must match). Returns once
    /// every server has created it.
    /// </summary>
    public async Task<PsTable> DeclareTableAsync(TableSpec spec, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        if (UpdateHandlers.BuiltInNames.Contains(spec.Handler.Split(':', 2)[0]))
        {
            UpdateHandlers.Parse(spec.Handler); // a bad built-in spec fails here, with the parser's message
        }
        lock (_tables)
        {
            if (_tables.TryGetValue(spec.Name, out var known))
            {
                return known.Info.SameDefinition(spec) ? known : throw new PsException(PsErrorCode.Conflict, $"table '{spec.Name}' was declared before as {known.Info.Describe()}");
            }
        }
        var w = new PayloadWriter();
        ControlMessages.WriteTableSpec(w, spec);
        var reply = await _scheduler.CallAsync(MessageType.DeclareTable, w.WrittenSpan.ToArray(), $"the declaration of table '{spec.Name}'", _options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        int[] fields = ControlMessages.ReadInts(reply.Payload, 2);
        var info = WaitForView(v => v.Number >= (uint)fields[1], $"view {fields[1]} with table '{spec.Name}'").FindTable(fields[0])
            ?? throw new PsException(PsErrorCode.Internal, $"the scheduler declared table '{spec.Name}' as id {fields[0]} but the view lacks it");
        lock (_tables)
        {
            if (!_tables.TryGetValue(spec.Name, out var table))
            {
                _tables[spec.Name] = table = new PsTable(this, info, new TableTraffic(spec.KeyCaching, CodecSpec.Parse(spec.Compression), info.Width));
                var prompt = _promptTables;
                if (info.Id >= prompt.Length)
                {
                    Array.Resize(ref prompt, info.Id + 1); // a new array: readers see the old one or the new one, both consistent
                }
                prompt[info.Id] = info.Mode == UpdateMode.Async;
                _promptTables = prompt;
            }
            return table;
        }
    }

    private ClusterView WaitForView(Func<ClusterView, bool> condition, string what)
    {
        long deadline = Environment.TickCount64 + (long)_options.RequestTimeout.TotalMilliseconds;
        lock (_gate)
        {
            while (_view is null || !condition(_view))
            {
                ThrowIfShutDown();
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout, $"worker {NodeId} waited {_options.RequestTimeout.TotalSeconds:0.#} s for {what}");
                }
                Monitor.Wait(_gate, (int)left);
            }
            return _view;
        }
    }

    /// <summary>Waits until every live worker has called BarrierAsync the same number of times.</summary>
    public async Task BarrierAsync(CancellationToken cancellationToken = default)
    {
        long sequence = Interlocked.Increment(ref _barrierSequence);
        await _scheduler.CallAsync(MessageType.Barrier, ReadOnlyMemory<byte>.Empty, $"barrier #{sequence} (waiting for all workers)", _options.BarrierTimeout, round: sequence, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Declares the job's work as units 0 .. <paramref name="units"/> - 1, handed out by the scheduler one at a time
    /// (<see cref="ClaimWorkAsync"/>): a dead worker's unfinished units go to the others or are dropped, by the
    /// scheduler's policy. Every worker may declare it; the count must agree.
    /// </summary>
    public async Task DeclareWorkAsync(int units, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(units, 1);
        await _scheduler.CallAsync(MessageType.DeclareWork, ControlMessages.Ints(units), $"the declaration of {units} work units", _options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The next unit of work for this worker, or null when every unit is done (or dropped). While the remaining units
    /// are in progress on other workers it waits, since a unit comes back if its worker dies.
    /// </summary>
    public async Task<int?> ClaimWorkAsync(CancellationToken cancellationToken = default)
    {
        long deadline = Environment.TickCount64 + (long)_options.BarrierTimeout.TotalMilliseconds;
        while (true)
        {
            var reply = await _scheduler.CallAsync(MessageType.ClaimWork, ReadOnlyMemory<byte>.Empty, "a work unit", _options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
            int[] fields = ControlMessages.ReadInts(reply.Payload, 7);
            WorkCounts = new WorkProgress(fields[2], fields[3], fields[4], fields[5], fields[6]);
            if (fields[0] >= 0)
            {
                lock (_heldUnits)
                {
                    _heldUnits.Add(fields[0]);
                }
                return fields[0];
            }
            if (fields[0] == -1)
            {
                return null;
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new PsException(PsErrorCode.Timeout, $"worker {NodeId} waited {_options.BarrierTimeout.TotalSeconds:0} s for the other workers' units to finish or come back");
            }
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reports a unit done; false when another worker finished it first (a backup of a slow unit).</summary>
    public async Task<bool> CompleteWorkAsync(int unit, CancellationToken cancellationToken = default)
    {
        var reply = await _scheduler.CallAsync(MessageType.CompleteWork, ControlMessages.Ints(unit), $"the completion of work unit {unit}", _options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        lock (_heldUnits)
        {
            _heldUnits.Remove(unit);
        }
        return ControlMessages.ReadInts(reply.Payload, 1)[0] == 1;
    }

    private readonly HashSet<int> _heldUnits = new(); // claimed, not yet reported done: told to a restarted scheduler

    /// <summary>The work queue's counts as of this worker's last claim.</summary>
    internal WorkProgress WorkCounts { get; private set; }

    /// <summary>Tells the scheduler this worker is done; the job ends when all workers are.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken = default)
    {
        WaitAll();
        if (!_scheduler.IsClosed && _shutdownReason is null)
        {
            await _scheduler.CallAsync(MessageType.Finish, ReadOnlyMemory<byte>.Empty, "the end of this worker", _options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Blocks until the call with this timestamp has completed; throws its error if it failed.</summary>
    public void Wait(long timestamp) => Wait(timestamp, WaitTimeout);

    /// <inheritdoc cref="Wait(long)"/>
    public void Wait(long timestamp, TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_gate)
        {
            if (timestamp < 0 || timestamp >= _clock.Next)
            {
                throw new ArgumentOutOfRangeException(nameof(timestamp), timestamp, $"no call with timestamp {timestamp} was issued (next is {_clock.Next})");
            }
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            while (!_clock.IsDone(timestamp))
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout, $"worker {NodeId}: call {timestamp} did not complete within {timeout.TotalSeconds:0.#} s");
                }
                Monitor.Wait(_gate, (int)Math.Min(left, int.MaxValue));
            }
            AddWaitTime(started);
            if (_failures.TryGetValue(timestamp, out var error))
            {
                throw new PsException(error.Code, error.Message, error);
            }
        }
    }

    /// <summary>Completes when the call with this timestamp has completed; faults with its error if it failed.</summary>
    public Task WaitAsync(long timestamp, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (timestamp < 0 || timestamp >= _clock.Next)
            {
                throw new ArgumentOutOfRangeException(nameof(timestamp), timestamp, $"no call with timestamp {timestamp} was issued (next is {_clock.Next})");
            }
            if (_clock.IsDone(timestamp))
            {
                return _failures.TryGetValue(timestamp, out var error) ? Task.FromException(new PsException(error.Code, error.Message, error)) : Task.CompletedTask;
            }
            if (!_waiters.TryGetValue(timestamp, out var tcs))
            {
                _waiters[timestamp] = tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            return tcs.Task.WaitAsync(WaitTimeout, cancellationToken);
        }
    }

    /// <summary>Blocks until every call issued so far has completed (errors are reported by Wait on their timestamps).</summary>
    public void WaitAll()
    {
        long last;
        lock (_gate)
        {
            last = _clock.Next - 1;
        }
        long deadline = Environment.TickCount64 + (long)WaitTimeout.TotalMilliseconds;
        lock (_gate)
        {
            while (_clock.OldestIncomplete <= last)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout, $"worker {NodeId}: call {_clock.OldestIncomplete} did not complete within {WaitTimeout.TotalSeconds:0.#} s");
                }
                Monitor.Wait(_gate, (int)left);
            }
        }
    }

    private TimeSpan WaitTimeout => _options.RequestTimeout * 3;

    private void ThrowIfShutDown()
    {
        if (_shutdownReason is { } reason)
        {
            throw new PsException(PsErrorCode.ShuttingDown, $"worker {NodeId}: {reason}");
        }
    }

    /// <summary>Asks every server for its counters (JSON objects, one per server).</summary>
    public async Task<string[]> GetServerStatsAsync(CancellationToken cancellationToken = default)
    {
        var links = Routes.BySlot;
        var results = new string[links.Length];
        for (int i = 0; i < links.Length; i++)
        {
            var request = new FrameHeader { Type = MessageType.ServerStats, SenderId = NodeId, RequestId = NextRequestId(), RowWidth = 1, ElementType = WireElementType.Float32 };
            var (_, payload) = await links[i].CallAsync(request, "a stats request", _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
            results[i] = Encoding.UTF8.GetString(payload);
        }
        return results;
    }

    /// <summary>Every row the servers hold for a table, sorted by key (a bulk read: model export, checks).</summary>
    internal async Task<(ulong[] Keys, float[] Values)> ReadAllAsync(PsTable table, CancellationToken cancellationToken)
    {
        var keys = new List<ulong>();
        var values = new List<float>();
        int width = table.Width;
        var routes = Routes;
        foreach (var link in routes.BySlot)
        {
            long cursor = 0;
            while (cursor >= 0)
            {
                var request = new FrameHeader
                {
                    Type = MessageType.Scan,
                    SenderId = NodeId,
                    RequestId = NextRequestId(),
                    TableId = table.Info.Id,
                    RowWidth = width,
                    ElementType = WireElementType.Float32,
                    Round = cursor,
                    ViewNumber = routes.View.Number,
                };
                var (header, payload) = await link.CallAsync(request, $"a scan of table '{table.Name}'", _options.RequestTimeout, cancellationToken).ConfigureAwait(false);
                int rows = header.KeyCount;
                if (payload.Length != rows * (sizeof(ulong) + width * sizeof(float)))
                {
                    throw new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} answered a scan with {payload.Length} bytes for {rows} rows");
                }
                keys.AddRange(MemoryMarshal.Cast<byte, ulong>(payload.AsSpan(0, rows * sizeof(ulong))));
                values.AddRange(MemoryMarshal.Cast<byte, float>(payload.AsSpan(rows * sizeof(ulong))));
                cursor = header.Round;
            }
        }
        var keyArray = keys.ToArray();
        var order = Enumerable.Range(0, keyArray.Length).ToArray();
        Array.Sort(keyArray, order);
        var sorted = new float[values.Count];
        for (int i = 0; i < order.Length; i++)
        {
            values.CopyTo(order[i] * width, sorted, i * width, width);
        }
        return (keyArray, sorted);
    }

    internal ulong NextRequestId() => (ulong)Interlocked.Increment(ref _nextRequestId);

    public async ValueTask DisposeAsync()
    {
        EnterShutdown("the worker closed its client");
        CloseLinks("worker closed its client");
        _scheduler?.Dispose();
        await Task.CompletedTask.ConfigureAwait(false);
    }
}
