using Microsoft.Extensions.Logging;

namespace ParameterServer.Core.Diagnostics;

/// <summary>Log messages of the runtime's hot paths, compiled once (no formatting unless enabled).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Worker {NodeId}: call {Timestamp} failed: {Reason}")]
    public static partial void LogDebugFailure(this ILogger logger, int nodeId, long timestamp, string reason);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Worker {NodeId} lost {Server}: {Reason}")]
    public static partial void LogWarningLinkLost(this ILogger logger, int nodeId, string server, string reason);
}
