using Microsoft.Extensions.Logging;

namespace ParameterServer.Server;

/// <summary>The server's log lines, compiled once (no formatting unless the level is enabled). Event ids 2000-2999.</summary>
internal static partial class ServerLog
{
    // The node (2000-2009)
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Server {Id} listening on {Host}:{Port}")]
    public static partial void LogListening(this ILogger logger, int id, string host, int port);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "Server {Id}: {Message}")]
    public static partial void LogViewRejected(this ILogger logger, int id, string message);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Server {Id}: the scheduler ends the job")]
    public static partial void LogJobEnded(this ILogger logger, int id);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Error, Message = "Server {Id} lost the scheduler at {Address}: {Reason}")]
    public static partial void LogSchedulerLost(this ILogger logger, int id, string address, string reason);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Server {Id}: installing view {View} without waiting for a large push: {Message}")]
    public static partial void LogViewInstalledWithoutDrain(this ILogger logger, int id, uint view, string message);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Debug, Message = "Server {Id}: {Peer} disconnected: {Reason}")]
    public static partial void LogPeerDisconnected(this ILogger logger, int id, string peer, string reason);

    // Answers (2010-2019)
    [LoggerMessage(EventId = 2010, Level = LogLevel.Debug, Message = "Server {Id}: could not acknowledge {Peer}: {Message}")]
    public static partial void LogAcknowledgeFailed(this ILogger logger, int id, string peer, string message);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Debug, Message = "Server {Id}: could not send an error to {Peer}: {Message}")]
    public static partial void LogErrorReplyFailed(this ILogger logger, int id, string peer, string message);

    // Store (2020-2029)
    [LoggerMessage(EventId = 2020, Level = LogLevel.Information, Message = "Server {Id}: created table {Table}")]
    public static partial void LogTableCreated(this ILogger logger, int id, string table);

    [LoggerMessage(EventId = 2021, Level = LogLevel.Error, Message = "Server {Id}: cannot create table {Table}: {Message}")]
    public static partial void LogTableCreateFailed(this ILogger logger, int id, string table, string message);

    // Migration and refill (2030-2039)
    [LoggerMessage(EventId = 2030, Level = LogLevel.Warning, Message = "Server {Id}: refilling replicas for view {View} stopped: {Message}")]
    public static partial void LogRefillStopped(this ILogger logger, int id, uint view, string message);

    [LoggerMessage(EventId = 2031, Level = LogLevel.Information, Message = "Server {Id}: copied {Blocks} blocks to new replicas for view {View} in {Ms:0} ms")]
    public static partial void LogReplicasRefilled(this ILogger logger, int id, long blocks, uint view, double ms);

    [LoggerMessage(EventId = 2032, Level = LogLevel.Warning, Message = "Server {Id}: ignored a malformed refill of table {Table} from server {Sender}")]
    public static partial void LogMalformedRefillIgnored(this ILogger logger, int id, int table, int sender);

    [LoggerMessage(EventId = 2033, Level = LogLevel.Warning, Message = "Server {Id}: ignored a refill from server {Sender}: {Message}")]
    public static partial void LogRefillIgnored(this ILogger logger, int id, int sender, string message);

    [LoggerMessage(EventId = 2034, Level = LogLevel.Information, Message = "Server {Id}: dropped {Blocks} blocks that moved to other servers in view {View}")]
    public static partial void LogMovedBlocksDropped(this ILogger logger, int id, long blocks, uint view);

    // Checkpoints (2040-2049)
    [LoggerMessage(EventId = 2040, Level = LogLevel.Information, Message = "Server {Id}: wrote checkpoint epoch {Epoch}: {Rows} rows, {Bytes} bytes in {Ms:0} ms")]
    public static partial void LogCheckpointWritten(this ILogger logger, int id, long epoch, long rows, long bytes, double ms);

    [LoggerMessage(EventId = 2041, Level = LogLevel.Error, Message = "Server {Id}: cannot write checkpoint epoch {Epoch} to {Path}: {Message}")]
    public static partial void LogCheckpointWriteFailed(this ILogger logger, int id, long epoch, string path, string message);

    [LoggerMessage(EventId = 2042, Level = LogLevel.Warning, Message = "Server {Id}: cannot report checkpoint epoch {Epoch}: {Message}")]
    public static partial void LogCheckpointReportFailed(this ILogger logger, int id, long epoch, string message);

    [LoggerMessage(EventId = 2043, Level = LogLevel.Information, Message = "Server {Id}: restored {Rows} rows from {Folder} (epoch {Epoch}) in {Ms:0} ms")]
    public static partial void LogCheckpointRestored(this ILogger logger, int id, long rows, string folder, long epoch, double ms);

    // Sync rounds (2050-2059)
    [LoggerMessage(EventId = 2050, Level = LogLevel.Debug, Message = "Server {Id}: a rounds marker from node {Sender} names table {Table}, which is not a sync table here")]
    public static partial void LogRoundsMarkerForUnknownTable(this ILogger logger, int id, int sender, int table);

    [LoggerMessage(EventId = 2051, Level = LogLevel.Information, Message = "Server {Id}: {Count} pushes of open rounds of table '{Table}' hold keys that moved; refused, to be sent to their new owners")]
    public static partial void LogMovedRoundPushesRefused(this ILogger logger, int id, int count, string table);

    // Replication (2060-2069)
    [LoggerMessage(EventId = 2060, Level = LogLevel.Debug, Message = "Server {Id}: cannot replicate to {Peer}: {Message}")]
    public static partial void LogReplicateFailed(this ILogger logger, int id, string peer, string message);

    [LoggerMessage(EventId = 2061, Level = LogLevel.Warning, Message = "Server {Id}: a replica refused push {Request}: {Message}")]
    public static partial void LogReplicaRefusedPush(this ILogger logger, int id, ulong request, string message);

    [LoggerMessage(EventId = 2062, Level = LogLevel.Information, Message = "Server {Id}: replica server {Peer} is gone ({Reason}); {Count} pushes are acknowledged on the remaining copies")]
    public static partial void LogReplicaLost(this ILogger logger, int id, int peer, string reason, int count);

    [LoggerMessage(EventId = 2063, Level = LogLevel.Warning, Message = "Server {Id}: its lease ended {LapsedMs} ms ago (no heartbeat echo from the scheduler in time; this process may have been frozen or cut off and declared dead): it refuses requests until the scheduler answers again")]
    public static partial void LogLeaseLapsed(this ILogger logger, int id, long lapsedMs);
}
