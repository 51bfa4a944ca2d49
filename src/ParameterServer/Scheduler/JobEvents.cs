using Microsoft.Extensions.Logging;

namespace ParameterServer.Scheduler;

/// <summary>Something that happened to the job, for the dashboard's time axis: when (Unix ms), what kind, and the scheduler's own words.</summary>
public sealed record JobEvent(long UnixMs, string Kind, string Text);

/// <summary>
/// The scheduler's log, keeping its membership, failure, checkpoint and migration lines as <see cref="JobEvent"/>s
/// (the last 500) whatever the log level: the events are the log lines, so they say the same thing.
/// </summary>
internal sealed class JobEvents(ILogger inner, TimeProvider time) : ILogger
{
    private const int Capacity = 500;

    // Scheduler log event ids (SchedulerLog) that are job events, and their kind.
    private static readonly Dictionary<int, string> Kinds = new()
    {
        [3000] = "join", [3001] = "start", [3002] = "leave", [3003] = "death", [3004] = "failure", [3005] = "failure",
        [3006] = "failure", [3007] = "rejoin", [3020] = "finish", [3021] = "failure", [3022] = "finish", [3031] = "backup",
        [3032] = "failure", [3040] = "table", [3050] = "restore", [3051] = "checkpoint", [3052] = "checkpoint",
        [3053] = "checkpoint", [3054] = "checkpoint", [3070] = "join", [3071] = "drain", [3072] = "drain",
        [3073] = "migration", [3075] = "migration", [3090] = "resume", [3093] = "failure",
    };

    private readonly Queue<JobEvent> _events = new();
    private readonly Dictionary<string, long> _counts = new();

    /// <summary>Events so far by kind, all of them (not only those kept), for the ps.scheduler.events counter.</summary>
    public KeyValuePair<string, long>[] Counts()
    {
        lock (_events)
        {
            return _counts.ToArray();
        }
    }

    /// <summary>The events kept, oldest first.</summary>
    public JobEvent[] Snapshot()
    {
        lock (_events)
        {
            return _events.ToArray();
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => inner.BeginScope(state);

    // Information and up is always "enabled" here, so that events are kept at any log level.
    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information || inner.IsEnabled(logLevel);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (Kinds.TryGetValue(eventId.Id, out string? kind))
        {
            var e = new JobEvent(time.GetUtcNow().ToUnixTimeMilliseconds(), kind, formatter(state, exception));
            lock (_events)
            {
                if (_events.Count == Capacity)
                {
                    _events.Dequeue();
                }
                _events.Enqueue(e);
                _counts[kind] = _counts.GetValueOrDefault(kind) + 1;
            }
        }
        if (inner.IsEnabled(logLevel))
        {
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
    }
}
