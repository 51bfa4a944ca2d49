using Microsoft.Extensions.Logging;

namespace ParameterServer.Transport;

/// <summary>The transport's log lines, compiled once (no formatting unless the level is enabled). Event ids 4000-4999.</summary>
internal static partial class TransportLog
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Warning, Message = "Closing connection from {Peer}: {Problem}")]
    public static partial void LogProtocolError(this ILogger logger, string peer, string? problem);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Closing connection from {Peer}: {Message}")]
    public static partial void LogConnectionBroken(this ILogger logger, string peer, string message);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Handler failed on a frame from {Peer}; closing the connection")]
    public static partial void LogHandlerFailed(this ILogger logger, Exception exception, string peer);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Error, Message = "OnClosed handler failed for {Peer}")]
    public static partial void LogOnClosedHandlerFailed(this ILogger logger, Exception exception, string peer);

    [LoggerMessage(EventId = 4010, Level = LogLevel.Warning, Message = "Accept failed: {Message}")]
    public static partial void LogAcceptFailed(this ILogger logger, string message);

    [LoggerMessage(EventId = 4011, Level = LogLevel.Error, Message = "Could not start a connection from {Remote}")]
    public static partial void LogConnectionStartFailed(this ILogger logger, Exception exception, string? remote);

    [LoggerMessage(EventId = 4012, Level = LogLevel.Warning, Message = "Refused a connection: {Why}")]
    public static partial void LogPeerRefused(this ILogger logger, string why);
}
