using Microsoft.Extensions.Logging;
using ParameterServer.Protocol;

namespace ParameterServer.Scheduler;

/// <summary>The scheduler's log lines, compiled once (no formatting unless the level is enabled). Event ids 3000-3999.</summary>
internal static partial class SchedulerLog
{
    // Membership and liveness (3000-3019)
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Registered {Node} ({Count}/{Expected} {Role}s)")]
    public static partial void LogNodeRegistered(this ILogger logger, string node, int count, int expected, string role);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "All {Servers} servers and {Workers} workers registered; the job starts")]
    public static partial void LogAllRegistered(this ILogger logger, int servers, int workers);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "{Node} {Why}")]
    public static partial void LogNodeGone(this ILogger logger, string node, string why);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "{Node} is dead: {Why}")]
    public static partial void LogNodeDead(this ILogger logger, string node, string why);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Error, Message = "No server is alive: the parameters are gone; ending the job")]
    public static partial void LogNoServerAlive(this ILogger logger);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Error, Message = "Parameters are lost: {Why}. Ending the job; resume from the last checkpoint (--restore) or run with a higher --replication")]
    public static partial void LogParametersLost(this ILogger logger, string why);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Error, Message = "Waited {Seconds:0} s for {Servers} servers and {Workers} workers; only {S} servers and {W} workers registered. Start the missing nodes with --scheduler {Host}:{Port}")]
    public static partial void LogStartupTimedOut(this ILogger logger, double seconds, int servers, int workers, int s, int w, string host, int port);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Information, Message = "{Node} rejoined")]
    public static partial void LogNodeRejoined(this ILogger logger, string node);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Debug, Message = "Could not send {Type} to {Peer}: {Message}")]
    public static partial void LogSendFailed(this ILogger logger, MessageType type, string? peer, string message);

    // Job control: finish and work queue (3020-3039)
    [LoggerMessage(EventId = 3020, Level = LogLevel.Information, Message = "{Node} finished")]
    public static partial void LogNodeFinished(this ILogger logger, string node);

    [LoggerMessage(EventId = 3021, Level = LogLevel.Error, Message = "The job ends without {Workers}: they died before finishing")]
    public static partial void LogWorkersFailed(this ILogger logger, string workers);

    [LoggerMessage(EventId = 3022, Level = LogLevel.Information, Message = "All workers finished; shutting the job down")]
    public static partial void LogAllWorkersFinished(this ILogger logger);

    [LoggerMessage(EventId = 3030, Level = LogLevel.Information, Message = "Work: {Units} units; a dead worker's unfinished units are {Policy}")]
    public static partial void LogWorkDeclared(this ILogger logger, int units, string policy);

    [LoggerMessage(EventId = 3031, Level = LogLevel.Information, Message = "Work: unit {Unit} is slow; {Node} runs a backup of it")]
    public static partial void LogBackupStarted(this ILogger logger, int unit, string node);

    [LoggerMessage(EventId = 3032, Level = LogLevel.Warning, Message = "Work: {Node} died with units {Units} unfinished; they are {Policy}")]
    public static partial void LogWorkLost(this ILogger logger, string node, string units, string policy);

    // Tables (3040-3049)
    [LoggerMessage(EventId = 3040, Level = LogLevel.Information, Message = "Declared table {Table} as id {Id}")]
    public static partial void LogTableDeclared(this ILogger logger, string table, int id);

    // Checkpoints (3050-3069)
    [LoggerMessage(EventId = 3050, Level = LogLevel.Information, Message = "Restoring epoch {Epoch} from {Folder}: {Tables} tables, {Rows} rows")]
    public static partial void LogRestoring(this ILogger logger, long epoch, string? folder, int tables, long rows);

    [LoggerMessage(EventId = 3051, Level = LogLevel.Error, Message = "Cannot create checkpoint folder {Folder}: {Message}")]
    public static partial void LogCheckpointFolderFailed(this ILogger logger, string folder, string message);

    [LoggerMessage(EventId = 3052, Level = LogLevel.Error, Message = "Checkpoint epoch {Epoch} is incomplete and will not be used: {Failure}")]
    public static partial void LogCheckpointIncomplete(this ILogger logger, long epoch, string failure);

    [LoggerMessage(EventId = 3053, Level = LogLevel.Error, Message = "Cannot write the manifest of checkpoint epoch {Epoch} in {Folder}: {Message}")]
    public static partial void LogManifestWriteFailed(this ILogger logger, long epoch, string folder, string message);

    [LoggerMessage(EventId = 3054, Level = LogLevel.Information, Message = "Checkpoint epoch {Epoch} complete: {Rows} rows from {Servers} servers in {Ms:0} ms ({Folder})")]
    public static partial void LogCheckpointComplete(this ILogger logger, long epoch, long rows, int servers, double ms, string folder);

    // Elastic membership and migration (3070-3089)
    [LoggerMessage(EventId = 3070, Level = LogLevel.Information, Message = "{Node} joined the running job ({Count} live workers)")]
    public static partial void LogNodeJoined(this ILogger logger, string node, int count);

    [LoggerMessage(EventId = 3071, Level = LogLevel.Information, Message = "Draining {Node}: it gets no more work units and leaves after its current one")]
    public static partial void LogDraining(this ILogger logger, string node);

    [LoggerMessage(EventId = 3072, Level = LogLevel.Information, Message = "{Node} is drained: its ranges have moved; it exits")]
    public static partial void LogNodeDrained(this ILogger logger, string node);

    [LoggerMessage(EventId = 3073, Level = LogLevel.Information, Message = "Migration started in view {View}: {What}; {Moved:P1} of the key space changes owner. The current owners copy it while serving")]
    public static partial void LogMigrationStarted(this ILogger logger, uint view, string what, double moved);

    [LoggerMessage(EventId = 3074, Level = LogLevel.Warning, Message = "Migration still copying after 30 s: waiting for {Nodes} to report their copies for (or accept) view {View}")]
    public static partial void LogMigrationStillCopying(this ILogger logger, string nodes, uint view);

    [LoggerMessage(EventId = 3075, Level = LogLevel.Information, Message = "Migration done in {Ms:0} ms (views {StartView}-{View}): {What}; {Moved:P1} of the key space moved")]
    public static partial void LogMigrationDone(this ILogger logger, double ms, uint startView, uint view, string what, double moved);

    [LoggerMessage(EventId = 3076, Level = LogLevel.Warning, Message = "Resuming a migration: {Servers} move toward their new virtual nodes once the copies are confirmed")]
    public static partial void LogResumingMigration(this ILogger logger, string servers);

    // Scheduler state (3090-3099)
    [LoggerMessage(EventId = 3090, Level = LogLevel.Warning, Message = "Resuming the job from {Path}: view {View}, {Nodes} live nodes; waiting up to {Seconds:0} s for them to reconnect")]
    public static partial void LogResumingJob(this ILogger logger, string path, uint view, int nodes, double seconds);

    [LoggerMessage(EventId = 3091, Level = LogLevel.Error, Message = "Cannot write the scheduler state to {Path}: {Message} (work-queue answers wait until it can)")]
    public static partial void LogStateWriteFailed(this ILogger logger, string path, string message);

    [LoggerMessage(EventId = 3093, Level = LogLevel.Critical, Message = "This scheduler is no longer the active one ({Path}): another scheduler may have taken over; stopping without sending anything more")]
    public static partial void LogDeposed(this ILogger logger, string path);

    [LoggerMessage(EventId = 3094, Level = LogLevel.Critical, Message = "{Silent} of the {Alive} live nodes fell silent together (no heartbeat for {Seconds:0.##} s or more): this scheduler is likely cut off from them; stepping down without declaring them dead, so a standby that can reach them takes over")]
    public static partial void LogSteppingDown(this ILogger logger, int silent, int alive, double seconds);

    [LoggerMessage(EventId = 3092, Level = LogLevel.Warning, Message = "The scheduler did not run for {Seconds:0.0} s (a GC pause, SIGSTOP or a frozen VM?): every node gets a full heartbeat timeout from now to be heard before any is declared dead")]
    public static partial void LogSchedulerFrozen(this ILogger logger, double seconds);
}
