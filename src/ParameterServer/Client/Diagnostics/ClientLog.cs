using Microsoft.Extensions.Logging;

namespace ParameterServer.Client.Diagnostics;

// Room: Diagnostics (a leaf every client room may use). Owns nothing: the worker's log messages, compiled once
// (no formatting unless enabled). The texts are those the worker logged before they moved here; the two hot-path
// messages of the worker stay in Core/Diagnostics/Log.cs (events 1001, 1002). Client events are 1100-1199.
internal static partial class ClientLog
{
    [LoggerMessage(EventId = 1100, Level = LogLevel.Information, Message = "Worker {Id} (rank {Rank} of {Workers}) connected to {Servers} servers")]
    public static partial void LogConnected(this ILogger logger, int id, int rank, int workers, int servers);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Worker {Id} is drained: it takes no more work units and leaves after its current one")]
    public static partial void LogDrained(this ILogger logger, int id);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Information, Message = "Worker {Id} routes by view {View}: {Servers} servers")]
    public static partial void LogRoutesByView(this ILogger logger, int id, uint view, int servers);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Debug, Message = "Worker {Id}: could not tell {Server} where its rounds of table '{Table}' start: {Message}")]
    public static partial void LogRoundsNotAnnounced(this ILogger logger, int id, string server, string table, string message);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Warning, Message = "Worker {Id} cannot route by view {View} yet: {Message}")]
    public static partial void LogCannotRouteYet(this ILogger logger, int id, uint view, string message);

    [LoggerMessage(EventId = 1105, Level = LogLevel.Warning, Message = "Worker {Id} failed over in {Ms:0.0} ms: the first resent call was answered by the keys' new owner ({Slices} slices resent so far)")]
    public static partial void LogFailedOver(this ILogger logger, int id, double ms, long slices);

    [LoggerMessage(EventId = 1106, Level = LogLevel.Warning, Message = "Worker {Id}: no call completed for {Seconds:0.0} s. Waiting: {Diagnosis}")]
    public static partial void LogCallsStalled(this ILogger logger, int id, double seconds, string diagnosis);

    [LoggerMessage(EventId = 1107, Level = LogLevel.Warning, Message = "Worker {Id}: slow call: {Call}")]
    public static partial void LogSlowCall(this ILogger logger, int id, string call);
}
