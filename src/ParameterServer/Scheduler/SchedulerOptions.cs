using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>Settings of the scheduler (the paper's server manager). One per job.</summary>
public sealed class SchedulerOptions
{
    /// <summary>Address to listen on. Defaults to 127.0.0.1; use 0.0.0.0 to accept nodes from other machines.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on; 0 picks a free one. Defaults to 9700.</summary>
    public int Port { get; set; } = 9700;

    /// <summary>Host name nodes should use to reach this scheduler, published in the view. Defaults to <see cref="Host"/>.</summary>
    public string? AdvertisedHost { get; set; }

    /// <summary>Servers the job waits for before it starts. Defaults to 1.</summary>
    public int Servers { get; set; } = 1;

    /// <summary>Workers the job waits for before it starts. Defaults to 1.</summary>
    public int Workers { get; set; } = 1;

    /// <summary>Points per server on the consistent-hash ring. Defaults to 256 (about 6% load imbalance).</summary>
    public int VirtualNodes { get; set; } = 256;

    /// <summary>
    /// Copies of every key range: a primary and its successors on the ring. 0 (the default) means 2 when the job has
    /// at least 2 servers, else 1. A push is acknowledged once every copy has it.
    /// </summary>
    public int Replication { get; set; }

    internal int EffectiveReplication => Replication > 0 ? Math.Min(Replication, Servers) : Math.Min(2, Servers);

    /// <summary>How often nodes send heartbeats (told to them at registration). Defaults to 100 ms.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Silence after which a node is declared dead. Defaults to 800 ms. A killed process is noticed sooner: its
    /// connection to the scheduler closes at once.
    /// </summary>
    public TimeSpan HeartbeatTimeout { get; set; } = TimeSpan.FromMilliseconds(800);

    /// <summary>How long to wait for the expected nodes to register. Defaults to 5 minutes.</summary>
    public TimeSpan StartupTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a table declaration waits for every server to accept the new view. Defaults to 30 s.</summary>
    public TimeSpan ViewAckTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Where checkpoints go (one epoch-NNNNNN folder each; the servers write into it, so on many machines it must be
    /// a shared path). Null: no checkpoints.
    /// </summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>How often to checkpoint while the job runs; zero: only once, when every worker has finished. Defaults to zero.</summary>
    public TimeSpan CheckpointInterval { get; set; }

    /// <summary>A checkpoint to resume from: an epoch folder, or a checkpoint directory (its newest complete epoch).</summary>
    public string? RestoreFrom { get; set; }

    /// <summary>What happens to the work units a dead worker had not finished (see <see cref="Client.PsClient.ClaimWorkAsync"/>). Defaults to reassign.</summary>
    public WorkerFailurePolicy OnWorkerFailure { get; set; } = WorkerFailurePolicy.Reassign;

    /// <summary>When the queue is empty, a unit claimed longer ago than this is also given to an idle worker (first result wins). Zero (the default): no backups.</summary>
    public TimeSpan BackupAfter { get; set; }

    /// <summary>The clock for heartbeat timeouts and backup work units; tests pass a fake one. Defaults to TimeProvider.System.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// Where the scheduler keeps its metadata so that, restarted on the same port with the same directory, it resumes
    /// the job (the nodes reconnect). Null: a restarted scheduler starts a new job.
    /// </summary>
    public string? StateDirectory { get; set; }

    /// <summary>
    /// A store shared with standby schedulers (etcd: <c>pserver scheduler --etcd</c>) instead of <see cref="StateDirectory"/>:
    /// the scheduler resumes the job from it, and stops as soon as the store says it is no longer the active one.
    /// </summary>
    public ISchedulerStateStore? StateStore { get; set; }

    /// <summary>The job's name: nodes started for another job are refused, and with etcd its keys are /pserver/NAME/... Defaults to "default".</summary>
    public string JobId { get; set; } = "default";

    public TransportOptions Transport { get; set; } = new();

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(TimeProvider);
        if (StateStore is not null && StateDirectory is not null)
        {
            throw new ArgumentException("a scheduler keeps its state in a directory or in a shared store, not both (--state-dir or --etcd)");
        }
        if (Servers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Servers), Servers, "a job needs at least one server");
        }
        if (Workers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Workers), Workers, "a job needs at least one worker");
        }
        if (VirtualNodes is < 1 or > 65536)
        {
            throw new ArgumentOutOfRangeException(nameof(VirtualNodes), VirtualNodes, "virtual nodes per server must be in [1, 65536]");
        }
        if (Replication is < 0 or > 16)
        {
            throw new ArgumentOutOfRangeException(nameof(Replication), Replication, "replication must be in [1, 16] (0: the default)");
        }
        if (Replication > Servers)
        {
            throw new ArgumentOutOfRangeException(nameof(Replication), Replication, $"replication {Replication} needs at least {Replication} servers, the job has {Servers}");
        }
        if (Port is < 0 or > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(Port), Port, "port must be in [0, 65535]");
        }
        if (HeartbeatTimeout <= HeartbeatInterval)
        {
            throw new ArgumentException($"HeartbeatTimeout ({HeartbeatTimeout.TotalMilliseconds} ms) must exceed HeartbeatInterval ({HeartbeatInterval.TotalMilliseconds} ms)");
        }
        if (CheckpointInterval < TimeSpan.Zero || (CheckpointInterval > TimeSpan.Zero && CheckpointInterval < TimeSpan.FromMilliseconds(100)))
        {
            throw new ArgumentOutOfRangeException(nameof(CheckpointInterval), CheckpointInterval, "the checkpoint interval must be 0 (only at the end) or at least 0.1 s");
        }
        if (CheckpointInterval > TimeSpan.Zero && CheckpointDirectory is null)
        {
            throw new ArgumentException("a checkpoint interval needs a checkpoint directory (--checkpoint-dir)");
        }
        Transport.Validate();
    }
}

/// <summary>What happens to the work a dead worker had claimed but not finished.</summary>
public enum WorkerFailurePolicy
{
    /// <summary>Its units go back to the queue and another worker does them (at least once: a unit the dead worker
    /// had partly pushed may be partly applied twice).</summary>
    Reassign,

    /// <summary>Its units are dropped: the job finishes without them.</summary>
    Drop,
}
