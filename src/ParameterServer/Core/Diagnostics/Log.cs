using Microsoft.Extensions.Logging;

namespace ParameterServer.Core.Diagnostics;

/// <summary>Log messages of the runtime's hot paths, compiled once (no formatting unless enabled).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Worker {NodeId}: call {Timestamp} failed: {Reason}")]
    public static partial void LogDebugFailure(this ILogger logger, int nodeId, long timestamp, string reason);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Worker {NodeId} lost {Server}: {Reason}")]
    public static partial void LogWarningLinkLost(this ILogger logger, int nodeId, string server, string reason);

    // The control channel to the scheduler (5000-5099)
    [LoggerMessage(EventId = 5000, Level = LogLevel.Warning, Message = "Lost the scheduler at {Address} ({Reason}); reconnecting for up to {Seconds:0} s")]
    public static partial void LogSchedulerReconnecting(this ILogger logger, string address, string reason, double seconds);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "Rejoined the scheduler at {Address}; sent {Calls} waiting calls again")]
    public static partial void LogSchedulerRejoined(this ILogger logger, string address, int calls);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Waiting for the scheduler at {Address} ({Reason}); retrying for up to {Seconds:0} s (--startup-timeout)")]
    public static partial void LogWaitingForScheduler(this ILogger logger, string address, string reason, double seconds);
}
