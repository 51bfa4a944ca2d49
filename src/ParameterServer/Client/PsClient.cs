using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Client.Dispatch;
using ParameterServer.Client.Failover;
using ParameterServer.Client.JobControl;
using ParameterServer.Client.PushFilters;
using ParameterServer.Client.Routing;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client;

// The host: registers with the scheduler, builds the rooms once the worker has its id, takes the scheduler's frames,
// and forwards the public API. Owns the declared tables' handles, the startup signal and the drain flag; every other
// field belongs to a room (see docs/ARCHITECTURE.md). Rooms, lowest first (each uses only those before it):
//   Diagnostics  log messages, the call observer
//   JobControl   shutdown; barriers, work queue, finish (scheduler calls only)
//   Routing      views, routes and links, request ids, side queries to servers
//   Dispatch     the call clock, slicing, sending, the in-flight ledger, answers (knows failover as ISliceRecovery)
//   Failover     orphans and resends, failover timing, reacting to new views
//   PushFilters  runs a table's push filter, then dispatches

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
public sealed class PsClient : IAsyncDisposable
{
    private readonly WorkerOptions _options;
    private readonly ILogger _log;
    private readonly ClientShutdown _shutdown = new();
    private readonly ViewFeed _views;
    private readonly Dictionary<string, PsTable> _tables = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ControlChannel _scheduler = null!;
    private readonly NodeMetrics _metrics;

    // The rooms, built in StartAsync once the worker has its node id.
    private JobCoordinator _job = null!;
    private CallClock _calls = null!;
    private RouteTable _routes = null!;
    private PromptTables _prompt = null!;
    private Dispatcher _dispatch = null!;
    private ResponseHandler _answers = null!;
    private FailoverCoordinator _failover = null!;
    private PushFilterStage _pushFilters = null!;
    private ServerQueries _queries = null!;
    private SliceLedger _ledger = null!;
    private WorkerProgress _progress = null!;

    private PsClient(WorkerOptions options, ILoggerFactory loggers)
    {
        options.Validate();
        _options = options;
        _log = loggers.CreateLogger("worker");
        _views = new ViewFeed(_shutdown);
        _metrics = new NodeMetrics("worker", () => NodeId, TrafficMeter, ReportMetric) { Loss = () => _progress?.Totals.Loss ?? double.NaN };
    }

    /// <summary>This worker's values of the <see cref="PsMetrics"/> instruments of its role, read when a collector asks.</summary>
    private void ReportMetric(string instrument, Action<long, KeyValuePair<string, object?>[]> emit)
    {
        if (_calls is null || _progress is null)
        {
            return; // not registered yet
        }
        switch (instrument)
        {
            case "ps.client.calls.in_flight":
                emit(_calls.InFlight, []);
                break;
            case "ps.client.backpressure.wait":
                emit((long)_calls.WaitTime.TotalMilliseconds, []);
                break;
            case "ps.client.failovers":
                emit(_failover.Failovers, []);
                break;
            case "ps.client.slow_calls":
                emit(_progress.Totals.SlowCalls, []);
                break;
            case "ps.app.steps":
                emit(_progress.Totals.Steps, []);
                break;
            case "ps.app.examples":
                emit(_progress.Totals.Examples, []);
                break;
        }
    }

    /// <summary>This worker's node id (unique in the job).</summary>
    public int NodeId { get; private set; } = -1;

    /// <summary>True when this worker joined a running job (<see cref="WorkerOptions.Join"/>) rather than being one it started with.</summary>
    public bool Joined => _options.Join;

    /// <summary>The extensions this worker was started with (<see cref="WorkerOptions.Extensions"/>): apps create their push filters here.</summary>
    public ExtensionRegistry Extensions => _options.Extensions;

    /// <summary>
    /// True when this worker joined the running job (<see cref="WorkerOptions.Join"/>) after the others passed their
    /// first barrier: it missed the start, and its barriers line up with the others' next ones.
    /// </summary>
    public bool JoinedLate { get; private set; }

    /// <summary>True once the job asked this worker to leave (pserver drain): it gets no more work units; its app should finish.</summary>
    public bool DrainRequested { get; private set; }

    /// <summary>This worker's rank among the workers: 0 .. <see cref="WorkerCount"/> - 1.</summary>
    public int Rank { get; private set; } = -1;

    /// <summary>Traffic counters, call timing and block placement of this worker and its job.</summary>
    public ClientDiagnostics Diagnostics => field ??= new ClientDiagnostics(this);

    /// <summary>Workers in the job when it started.</summary>
    public int WorkerCount { get; private set; }

    /// <summary>Live servers in the current view.</summary>
    public int ServerCount => _views.Latest?.Servers.Count ?? 0;

    /// <summary>Cancelled when the scheduler ends the job (or is lost); long-running apps should stop then.</summary>
    public CancellationToken ShutdownRequested => _shutdown.Token;

    /// <summary>Frames and bytes in and out of this worker, by message type and peer (servers and the scheduler).</summary>
    internal TrafficMeter TrafficMeter { get; } = new();

    /// <summary>Sends this worker's traffic counters to the scheduler (before a barrier, so that rank 0 can add them up after it).</summary>
    internal void PublishTraffic() => _scheduler.PublishTraffic();

    /// <summary>The app's progress and step times, reported with this worker's traffic counters (see <see cref="ClientDiagnostics.ReportStep"/>).</summary>
    internal WorkerProgress Progress => _progress;

    /// <summary>Every node's traffic counters as last published to the scheduler, by node id.</summary>
    internal Task<Dictionary<int, TrafficSnapshot>> FetchTrafficAsync(CancellationToken cancellationToken) =>
        _scheduler.FetchTrafficAsync(_options.RequestTimeout, cancellationToken);

    /// <summary>Bytes this worker sent to and received from servers.</summary>
    public (long Sent, long Received) Traffic => _routes?.Traffic ?? (0, 0);

    /// <summary>Time callers spent blocked: in Wait, and in calls held back by their table's consistency.</summary>
    public TimeSpan WaitTime => _calls?.WaitTime ?? TimeSpan.Zero;

    /// <summary>Sees every call get its timestamp and complete (benchmarks measure latency with it); null on the normal path.</summary>
    internal ICallObserver? Observer
    {
        get => _calls.Observer;
        set => _calls.Observer = value;
    }

    internal ClusterView View => _views.Latest ?? throw new InvalidOperationException("not connected");

    /// <summary>The view this worker routes by and its links (may lag <see cref="View"/> until the new servers are reached).</summary>
    internal Routes Routes => _routes?.Connected ?? throw new InvalidOperationException("not connected");

    /// <summary>The work queue's counts as of this worker's last claim.</summary>
    internal WorkProgress WorkCounts => _job.WorkCounts;

    /// <summary>Keys that push filters kept from being sent.</summary>
    internal long FilteredKeys => _pushFilters.FilteredKeys;

    /// <summary>Answers KeyCacheMiss to this worker's signatures (each followed by a resend with the keys).</summary>
    internal long KeyCacheMisses => _answers.KeyCacheMisses;

    /// <summary>Filtered pull answers that left out a row this worker did not hold (each followed by a refresh).</summary>
    internal long PullRefreshes => _answers.PullRefreshes;

    /// <summary>Slices sent again to a new owner after their server was lost or the views disagreed.</summary>
    internal long Failovers => _failover.Failovers;

    /// <summary>How long the last failover took: from losing a server with calls outstanding to the first answer to a resent call.</summary>
    internal TimeSpan? LastFailover => _failover.LastFailover;

    /// <summary>When (Unix ms, wall clock) the last failover completed: comparable across processes on one machine.</summary>
    internal long LastFailoverAnsweredUnixMs => _failover.LastFailoverAnsweredUnixMs;

    /// <summary>Forgets the rows of filtered pull answers held for a table (tests: left-out rows must then be asked for again).</summary>
    internal void ForgetPulledRows(int tableId) => _routes.ForgetPulledRows(tableId);

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
        _scheduler = await ControlChannel.ConnectAsync(_options.Scheduler, _options.Transport, _log, OnSchedulerFrame, OnSchedulerLost, TrafficMeter, _options.StartupTimeout, cancellationToken).ConfigureAwait(false);
        var w = new PayloadWriter();
        ControlMessages.WriteRegister(w, NodeRole.Worker, "", 0, [], _options.Join, jobId: _options.JobId);
        var reply = await _scheduler.CallAsync(MessageType.Register, w.WrittenSpan.ToArray(), "the registration of this worker", _options.StartupTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        int[] fields = ControlMessages.ReadInts(reply.Payload, 4);
        NodeId = fields[0];
        Rank = fields[1];
        JoinedLate = fields[3] > 0;
        BuildRooms(NodeId);
        _scheduler.SenderId = NodeId;
        _scheduler.EnableReconnect(ControlChannel.ReconnectWindow, _job.RejoinPayload);
        var heartbeat = TimeSpan.FromMilliseconds(fields[2]);
        _scheduler.StartHeartbeats(heartbeat, () => _shutdown.IsCancellationRequested);
        try
        {
            await _ready.Task.WaitAsync(_options.StartupTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var v = _views.Latest;
            throw new PsException(PsErrorCode.Timeout,
                $"the job did not start within {_options.StartupTimeout.TotalSeconds:0} s: the scheduler at {_options.Scheduler} expects {v?.ExpectedServers} servers and {v?.ExpectedWorkers} workers, {v?.Servers.Count} servers and {v?.Workers.Count} workers have registered");
        }
        var view = View;
        WorkerCount = view.Workers.Count;
        try
        {
            _routes.Update(view, startup: true);
        }
        catch (TransportException ex)
        {
            _routes.CloseAll("startup failed");
            throw new PsException(PsErrorCode.Unreachable, $"worker {NodeId}: {ex.Message}", ex);
        }
        var scanner = new Thread(ScanTimeouts) { IsBackground = true, Name = "ps-timeouts" };
        scanner.Start();
        _log.LogConnected(NodeId, Rank, WorkerCount, view.Servers.Count);
    }

    /// <summary>Builds the rooms, lowest first, and wires the two links that point back up (link events, recovery).</summary>
    private void BuildRooms(int nodeId)
    {
        _job = new JobCoordinator(_scheduler, _options, _shutdown, nodeId);
        _calls = new CallClock(nodeId, _log, _shutdown, waitTimeout: _options.RequestTimeout * 3);
        _routes = new RouteTable(nodeId, _options, _log, TrafficMeter, SyncRounds);
        _prompt = new PromptTables();
        var ledger = _ledger = new SliceLedger();
        _dispatch = new Dispatcher(nodeId, _options, _calls, ledger, _routes, _prompt);
        _answers = new ResponseHandler(nodeId, _options, _log, _shutdown, _calls, ledger, _dispatch, _prompt);
        _failover = new FailoverCoordinator(nodeId, _options, _log, _shutdown, _views, _routes, ledger, _dispatch, _prompt);
        _pushFilters = new PushFilterStage(_dispatch);
        _queries = new ServerQueries(nodeId, _options, _routes);
        _routes.LinkEvents = _answers;
        _dispatch.Recovery = _failover;
        _progress = new WorkerProgress(_routes, ledger, _scheduler, _options.SlowCallAfter);
        _scheduler.Reporter = _progress.TakeReport;
    }

    /// <summary>Each sync table's next push round (under the route switch): the first one cut by routes just switched.</summary>
    private List<RoundMark> SyncRounds()
    {
        var rounds = new List<RoundMark>();
        lock (_tables)
        {
            foreach (var table in _tables.Values)
            {
                var state = table.State;
                if (state.Info.Mode == UpdateMode.Sync && state.NextRound > 0)
                {
                    rounds.Add(new RoundMark(state.Info.Id, state.Name, state.Width, state.NextRound));
                }
            }
        }
        return rounds;
    }

    private void OnSchedulerFrame(FrameHeader header, byte[] payload)
    {
        switch (header.Type)
        {
            case MessageType.View:
                var view = ClusterView.Read(payload);
                bool newer = _views.Offer(view);
                _scheduler.Reply(header, []);
                if (newer && _routes is { } routes && routes.Current != Routes.None)
                {
                    _failover.OnNewView(); // off the scheduler's receive thread: it may connect and resend
                }
                if (view.Ready)
                {
                    _ready.TrySetResult();
                }
                break;
            case MessageType.Drain:
                DrainRequested = true;
                _log.LogDrained(NodeId);
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
        _shutdown.Enter(reason);
        _calls?.Wake();
        _views.Wake();
        _ready.TrySetException(new PsException(PsErrorCode.ShuttingDown, reason));
        _shutdown.Cancel();
    }

    /// <summary>Fails calls past their deadline and resends what failover allows, every <see cref="FailoverCoordinator.OrphanRetryMs"/>.</summary>
    private void ScanTimeouts()
    {
        var expired = new List<Slice>();
        long reportedStall = 0, scans = 0;
        while (!_shutdown.IsCancellationRequested)
        {
            Thread.Sleep(FailoverCoordinator.OrphanRetryMs);
            _dispatch.FailExpired(expired);
            _failover.ResendDue();
            reportedStall = ReportStall(reportedStall);
            if (++scans % (500 / FailoverCoordinator.OrphanRetryMs) == 0)
            {
                foreach (string call in _progress.NewlySlow())
                {
                    _log.LogSlowCall(NodeId, call);
                }
            }
        }
    }

    /// <summary>Calls stalled at least this long are reported with what they wait on (then again each time as long).</summary>
    private static readonly TimeSpan StallReportAfter = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A hang is a failure with a diagnosis: when no call has completed for <see cref="StallReportAfter"/> while some
    /// are incomplete, logs which calls wait on what (servers, views, failover, the scheduler). Returns the stall
    /// length last reported (0 once calls complete again).
    /// </summary>
    private long ReportStall(long reported)
    {
        var (stalledMs, pending) = _calls.Stall();
        if (stalledMs < StallReportAfter.TotalMilliseconds)
        {
            return 0;
        }
        if (stalledMs - reported < StallReportAfter.TotalMilliseconds)
        {
            return reported;
        }
        _log.LogCallsStalled(NodeId, stalledMs / 1000.0, $"{pending}; {_ledger.DescribeInFlight()}; {_failover.DescribeOrphans()}; {_scheduler.DescribePending()}");
        return stalledMs;
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
        var info = _views.WaitFor(v => v.Number >= (uint)fields[1], $"view {fields[1]} with table '{spec.Name}'", _options.RequestTimeout, NodeId).FindTable(fields[0])
            ?? throw new PsException(PsErrorCode.Internal, $"the scheduler declared table '{spec.Name}' as id {fields[0]} but the view lacks it");
        lock (_tables)
        {
            if (!_tables.TryGetValue(spec.Name, out var table))
            {
                _tables[spec.Name] = table = new PsTable(this, info, new TableTraffic(spec.KeyCaching, CodecSpec.Parse(spec.Compression), info.Words));
                _prompt.Add(info);
            }
            return table;
        }
    }

    /// <summary>Waits until every live worker has called BarrierAsync the same number of times.</summary>
    public Task BarrierAsync(CancellationToken cancellationToken = default) => _job.BarrierAsync(cancellationToken);

    /// <summary>
    /// Declares the job's work as units 0 .. <paramref name="units"/> - 1, handed out by the scheduler one at a time
    /// (<see cref="ClaimWorkAsync"/>): a dead worker's unfinished units go to the others or are dropped, by the
    /// scheduler's policy. Every worker may declare it; the count must agree.
    /// </summary>
    public Task DeclareWorkAsync(int units, CancellationToken cancellationToken = default) => _job.DeclareWorkAsync(units, cancellationToken);

    /// <summary>
    /// Declares round <paramref name="round"/> of work that a job gives out in rounds (a batch solver's iterations):
    /// units 0 .. <paramref name="units"/> - 1 again, once every unit of the previous round is done. A unit claimed
    /// longer than <paramref name="backupAfter"/> ago is also given to a worker that asks when none is left (a backup
    /// task; the first completion wins); zero: the scheduler's --backup-after. Declaring the current round again is a no-op.
    /// </summary>
    public Task DeclareWorkRoundAsync(int round, int units, TimeSpan backupAfter, CancellationToken cancellationToken = default) =>
        _job.DeclareWorkRoundAsync(round, units, backupAfter, cancellationToken);

    /// <summary>
    /// The next unit of work for this worker, or null when every unit is done (or dropped). While the remaining units
    /// are in progress on other workers it waits, since a unit comes back if its worker dies.
    /// </summary>
    public Task<int?> ClaimWorkAsync(CancellationToken cancellationToken = default) => _job.ClaimWorkAsync(cancellationToken);

    /// <summary>Reports a unit done; false when another worker finished it first (a backup of a slow unit).</summary>
    public Task<bool> CompleteWorkAsync(int unit, CancellationToken cancellationToken = default) => _job.CompleteWorkAsync(unit, cancellationToken);

    /// <summary>Tells the scheduler this worker is done; the job ends when all workers are.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken = default)
    {
        WaitAll();
        await _job.FinishAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Blocks until the call with this timestamp has completed; throws its error if it failed.</summary>
    public void Wait(long timestamp) => _calls.Wait(timestamp, _calls.WaitTimeout);

    /// <inheritdoc cref="Wait(long)"/>
    public void Wait(long timestamp, TimeSpan timeout) => _calls.Wait(timestamp, timeout);

    /// <summary>Completes when the call with this timestamp has completed; faults with its error if it failed.</summary>
    public Task WaitAsync(long timestamp, CancellationToken cancellationToken = default) => _calls.WaitAsync(timestamp, cancellationToken);

    /// <summary>Blocks until every call issued so far has completed (errors are reported by Wait on their timestamps).</summary>
    public void WaitAll() => _calls.WaitAll();

    /// <summary>Asks every server for its counters (JSON objects, one per server; a server that dies during the call is left out).</summary>
    public Task<string[]> GetServerStatsAsync(CancellationToken cancellationToken = default) => _queries.GetServerStatsAsync(cancellationToken);

    /// <summary>
    /// Runs vector operations on the servers, in order, over whole tables of one placement group (see <see cref="VectorOp"/>),
    /// and returns the value of each reduction (<see cref="VectorOp.Dot"/>, <see cref="VectorOp.Norm1"/>, <see cref="VectorOp.MaxAbs"/>) in order. Wait for this worker's pushes to those tables
    /// first. A program is not sent again after a server fails mid-way (some copies may have run it): the call throws.
    /// </summary>
    public Task<double[]> RunVectorOpsAsync(IReadOnlyList<VectorOp> ops, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ops);
        var wire = new WireVectorOp[ops.Count];
        for (int i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            if (op.Target is null || op.Source is null)
            {
                throw new ArgumentException($"vector operation {i} is empty: build it with one of VectorOp's factories (Axpby, Dot, ...)", nameof(ops));
            }
            wire[i] = new WireVectorOp(op.Kind, op.Target.Info.Id, op.Source.Info.Id, op.Alpha, op.Beta);
        }
        return _queries.RunVectorOpsAsync(wire, cancellationToken);
    }

    internal Task<(ulong[] Keys, float[] Values)> ReadAllAsync(PsTable table, CancellationToken cancellationToken) => _queries.ReadAllAsync(table.Info, cancellationToken);

    /// <summary>A push, pull or push-pull on a table: through the table's push filter when it has one.</summary>
    internal long Submit(PsTable table, MessageType kind, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values, Memory<float> destination, ReadOnlySpan<long> after)
    {
        var state = table.State;
        if (kind == MessageType.Push && state.PushFilter is { } filter && keys.Length > 0)
        {
            _dispatch.Validate(state, kind, keys, values, destination, after);
            return _pushFilters.Submit(state, filter, keys, values, after);
        }
        return _dispatch.Submit(state, kind, keys, values, destination, after);
    }

    internal void SetTau(PsTable table, int tau) => _calls.SetTau(table.State, tau);

    public async ValueTask DisposeAsync()
    {
        _metrics.Dispose();
        EnterShutdown("the worker closed its client");
        _routes?.CloseAll("worker closed its client");
        _scheduler?.Dispose();
        await Task.CompletedTask.ConfigureAwait(false);
    }
}
