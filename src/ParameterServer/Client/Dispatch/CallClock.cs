using Microsoft.Extensions.Logging;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Client.JobControl;
using ParameterServer.Client.Routing;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns the worker's clock of calls: timestamps and their completion, each failed call's error, the
// tasks awaiting a timestamp, the operations parked on dependencies, the operation pool, the time callers spent
// blocked, and the lock (_gate) callers wait on (Wait, WaitAll, bounded delay). Uses: the routes (to take a sync round
// with them), the shutdown, the call observer. Knows nothing of sending: Complete returns the operations to dispatch.

/// <summary>Timestamps of a worker's calls: issued under bounded delay, completed in any order, waited on.</summary>
internal sealed class CallClock(int nodeId, ILogger log, ClientShutdown shutdown, TimeSpan waitTimeout)
{
    private readonly object _gate = new(); // clocks, consistency, parked operations; Monitor.Wait/PulseAll
    private readonly CompletionWindow _clock = new();
    private readonly Dictionary<long, PsException> _failures = new();
    private readonly Dictionary<long, TaskCompletionSource> _waiters = new();
    private readonly List<Operation> _parked = new();
    private readonly Stack<Operation> _operationPool = new();
    private readonly object _nodeTag = nodeId; // boxed once: metric tags must not allocate per call
    private long _waitTicks;
    private long _lastCompletionMs = Environment.TickCount64; // for the stall diagnosis

    /// <summary>A receive thread is handling a batch of answers (set in <see cref="BeginReceiveBatch"/>, cleared in <see cref="EndReceiveBatch"/>).</summary>
    [ThreadStatic]
    private static bool t_inReceiveBatch;

    [ThreadStatic]
    private static bool t_pulseAtBatchEnd;

    /// <summary>Sees every call get its timestamp and complete (benchmarks measure latency with it); null on the normal path.</summary>
    public ICallObserver? Observer { get; set; }

    /// <summary>The next timestamp to be issued (read without the lock, to check a caller's dependencies).</summary>
    public long Next => _clock.Next;

    /// <summary>
    /// For the stall diagnosis: how long no call has completed while some were incomplete (0 when none is), and what
    /// is incomplete.
    /// </summary>
    public (long StalledMs, string Pending) Stall()
    {
        lock (_gate)
        {
            if (_clock.InFlight == 0)
            {
                return (0, "");
            }
            return (Environment.TickCount64 - _lastCompletionMs,
                $"{_clock.InFlight} calls incomplete from call {_clock.OldestIncomplete} on, {_parked.Count} of them waiting for the calls they depend on");
        }
    }

    /// <summary>Calls issued and not yet complete.</summary>
    public long InFlight
    {
        get
        {
            lock (_gate)
            {
                return _clock.InFlight;
            }
        }
    }

    /// <summary>How long Wait and WaitAll wait: three request timeouts.</summary>
    public TimeSpan WaitTimeout => waitTimeout;

    /// <summary>Time callers spent blocked: in Wait, and in calls held back by their table's consistency.</summary>
    public TimeSpan WaitTime => TimeSpan.FromTicks(Interlocked.Read(ref _waitTicks));

    private void AddWaitTime(long startTimestamp) =>
        Interlocked.Add(ref _waitTicks, System.Diagnostics.Stopwatch.GetElapsedTime(startTimestamp).Ticks);

    /// <summary>
    /// A new operation with its timestamp, once the table's bounded delay lets it start (call k on a table starts only
    /// when calls &lt;= k - tau - 1 have completed). A push takes the table's next round together with the routes.
    /// </summary>
    public Operation Issue(TableState table, MessageType kind, Memory<float> destination, ReadOnlySpan<long> after, RouteTable routeTable, out Routes routes, out long round)
    {
        lock (_gate)
        {
            shutdown.ThrowIfShutDown(nodeId);
            long deadline = Environment.TickCount64 + (long)waitTimeout.TotalMilliseconds;
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            bool spun = table.Tau > 1; // a deep pipeline amortises the wake-up: only a shallow one polls first
            while (table.Window.InFlight > table.Tau)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout,
                        $"a call on table '{table.Name}' waited {waitTimeout.TotalSeconds:0.#} s for call #{table.Window.OldestIncomplete} of that table to complete ({table.Consistency})");
                }
                if (!spun)
                {
                    // The call that frees this one is often microseconds from done: poll for it before sleeping (waking a
                    // sleeping thread costs more on an idle machine). Outside the lock, so the completion can take it.
                    spun = true;
                    long until = started + Transport.Connection.AnswerSpinTicks;
                    Monitor.Exit(_gate);
                    try
                    {
                        while (table.Window.InFlight > table.Tau && System.Diagnostics.Stopwatch.GetTimestamp() < until)
                        {
                            Thread.Yield(); // lets a thread this core owes time to run; returns at once on an idle core
                        }
                    }
                    finally
                    {
                        Monitor.Enter(_gate);
                    }
                    continue;
                }
                Monitor.Wait(_gate, (int)left);
                shutdown.ThrowIfShutDown(nodeId);
            }
            AddWaitTime(started);
            if (PsMetrics.Staleness.Enabled)
            {
                PsMetrics.Staleness.Record(table.Window.InFlight, new("node", _nodeTag), new("table", table.Name));
            }
            var op = _operationPool.Count > 0 ? _operationPool.Pop() : new Operation();
            op.Timestamp = _clock.Take();
            op.TableSeq = table.Window.Take();
            op.Table = table;
            op.Kind = kind;
            op.Destination = destination;
            op.IssuedAt = PsMetrics.CallDuration.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            op.Span = PsTracing.StartCall(kind, table.Name, op.Timestamp);
            Observer?.OnIssued(op.Timestamp);
            // Taken with the round: routes switch under the same lock, so a new server learns exactly which rounds
            // were cut without it (see RouteTable.AnnounceRounds).
            routes = routeTable.TakeWithRoutes(ref table.NextRound, take: kind != MessageType.Pull, out round);
            foreach (long t in after)
            {
                op.After.Add(t);
            }
            return op;
        }
    }

    /// <summary>Parks an operation whose dependencies are not all done (released by <see cref="Complete"/>); false when they are.</summary>
    public bool TryPark(Operation op)
    {
        lock (_gate)
        {
            if (DependenciesDone(op))
            {
                return false;
            }
            _parked.Add(op);
            return true;
        }
    }

    /// <summary>The error of a completed call, or null.</summary>
    public PsException? FailureOf(long timestamp)
    {
        lock (_gate)
        {
            _failures.TryGetValue(timestamp, out var failed);
            return failed;
        }
    }

    private bool DependenciesDone(Operation op)
    {
        foreach (long t in op.After)
        {
            if (!_clock.IsDone(t))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Marks the operation's timestamp done, recycles it, wakes waiters; returns the parked operations it released
    /// (the caller dispatches them, last first), or null.
    /// </summary>
    public List<Operation>? Complete(Operation op)
    {
        List<Operation>? ready = null;
        TaskCompletionSource? waiter;
        var error = op.Error;
        long timestamp = op.Timestamp;
        if (op.IssuedAt != 0 && error is null)
        {
            PsMetrics.CallDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(op.IssuedAt).TotalSeconds,
                new("node", _nodeTag), new("table", op.Table.Name), new("operation", op.Kind switch
                {
                    MessageType.Push => "push",
                    MessageType.Pull => "pull",
                    _ => "pushpull",
                }));
        }
        if (op.Span is { } span)
        {
            if (error is not null)
            {
                span.SetStatus(System.Diagnostics.ActivityStatusCode.Error, error.Message);
            }
            span.Stop();
        }
        lock (_gate)
        {
            _lastCompletionMs = Environment.TickCount64;
            _clock.Complete(timestamp);
            op.Table.Window.Complete(op.TableSeq);
            if (error is not null)
            {
                _failures[timestamp] = error;
                log.LogDebugFailure(nodeId, timestamp, error.Message);
            }
            _waiters.Remove(timestamp, out waiter);
            for (int i = _parked.Count - 1; i >= 0; i--)
            {
                if (DependenciesDone(_parked[i]))
                {
                    (ready ??= new List<Operation>()).Add(_parked[i]);
                    _parked.RemoveAt(i);
                }
            }
            op.Reset();
            _operationPool.Push(op);
            if (t_inReceiveBatch)
            {
                t_pulseAtBatchEnd = true; // one wake-up per batch of answers (EndReceiveBatch), not one per call
            }
            else
            {
                Monitor.PulseAll(_gate);
            }
        }
        Observer?.OnCompleted(timestamp, error);
        if (waiter is not null)
        {
            if (error is null)
            {
                waiter.TrySetResult();
            }
            else
            {
                waiter.TrySetException(new PsException(error.Code, error.Message, error));
            }
        }
        return ready;
    }

    /// <summary>A receive thread starts handling answers: completions wait for <see cref="EndReceiveBatch"/> to wake callers.</summary>
    public static void BeginReceiveBatch() => t_inReceiveBatch = true;

    /// <summary>Wakes the callers waiting on calls completed during the batch that just ended, once.</summary>
    public void EndReceiveBatch()
    {
        t_inReceiveBatch = false;
        if (t_pulseAtBatchEnd)
        {
            t_pulseAtBatchEnd = false;
            Wake();
        }
    }

    /// <summary>Wakes every caller waiting on the clock (a larger tau, or shutdown).</summary>
    public void Wake()
    {
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }
    }

    public void SetTau(TableState table, int tau)
    {
        lock (_gate)
        {
            table.SetTauUnderLock(tau);
            Monitor.PulseAll(_gate); // a larger tau may release callers waiting on the old bound
        }
    }

    /// <summary>Blocks until the call with this timestamp has completed; throws its error if it failed.</summary>
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
                    throw new PsException(PsErrorCode.Timeout, $"worker {nodeId}: call {timestamp} did not complete within {timeout.TotalSeconds:0.#} s");
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
    public Task WaitAsync(long timestamp, CancellationToken cancellationToken)
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
            return tcs.Task.WaitAsync(waitTimeout, cancellationToken);
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
        long deadline = Environment.TickCount64 + (long)waitTimeout.TotalMilliseconds;
        lock (_gate)
        {
            while (_clock.OldestIncomplete <= last)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new PsException(PsErrorCode.Timeout, $"worker {nodeId}: call {_clock.OldestIncomplete} did not complete within {waitTimeout.TotalSeconds:0.#} s");
                }
                Monitor.Wait(_gate, (int)left);
            }
        }
    }
}
