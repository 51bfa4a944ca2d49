using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Client.JobControl;

// Room: JobControl (apart from the data plane: it talks only to the scheduler). Owns the barrier sequence, the work
// units this worker holds (told to a restarted scheduler) and the work queue's counts as of the last claim.
// Uses: the scheduler's control channel, the client's shutdown.

/// <summary>A worker's calls to the scheduler about the job: barriers, the work queue, the end of the worker.</summary>
internal sealed class JobCoordinator(ControlChannel scheduler, WorkerOptions options, ClientShutdown shutdown, int nodeId)
{
    private readonly HashSet<int> _heldUnits = new(); // claimed, not yet reported done: told to a restarted scheduler
    private long _barrierSequence;

    /// <summary>The work queue's counts as of this worker's last claim.</summary>
    public WorkProgress WorkCounts { get; private set; }

    /// <summary>What this worker tells a scheduler it reconnects to: who it is and the units it holds.</summary>
    public byte[] RejoinPayload()
    {
        lock (_heldUnits)
        {
            return ControlMessages.Ints([nodeId, (int)NodeRole.Worker, .. _heldUnits]);
        }
    }

    /// <summary>Waits until every live worker has called BarrierAsync the same number of times.</summary>
    public async Task BarrierAsync(CancellationToken cancellationToken)
    {
        long sequence = Interlocked.Increment(ref _barrierSequence);
        await scheduler.CallAsync(MessageType.Barrier, ReadOnlyMemory<byte>.Empty, $"barrier #{sequence} (waiting for all workers)", options.BarrierTimeout, round: sequence, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Declares the job's work as units 0 .. <paramref name="units"/> - 1.</summary>
    public async Task DeclareWorkAsync(int units, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(units, 1);
        await scheduler.CallAsync(MessageType.DeclareWork, ControlMessages.Ints(units), $"the declaration of {units} work units", options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Declares round <paramref name="round"/> of the job's work: <paramref name="units"/> units, backed up after <paramref name="backupAfter"/>.</summary>
    public async Task DeclareWorkRoundAsync(int round, int units, TimeSpan backupAfter, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(units, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(round);
        int afterMs = (int)Math.Clamp(backupAfter.TotalMilliseconds, 0, int.MaxValue);
        await scheduler.CallAsync(MessageType.DeclareWork, ControlMessages.Ints(units, round, afterMs), $"the declaration of round {round} of the work ({units} units)", options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The next unit of work for this worker, or null when every unit is done (or dropped).</summary>
    public async Task<int?> ClaimWorkAsync(CancellationToken cancellationToken)
    {
        long deadline = Environment.TickCount64 + (long)options.BarrierTimeout.TotalMilliseconds;
        while (true)
        {
            var reply = await scheduler.CallAsync(MessageType.ClaimWork, ReadOnlyMemory<byte>.Empty, "a work unit", options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
            int[] fields = ControlMessages.ReadInts(reply.Payload, 8);
            WorkCounts = new WorkProgress(fields[2], fields[3], fields[4], fields[5], fields[6], fields[7]);
            if (fields[0] >= 0)
            {
                lock (_heldUnits)
                {
                    _heldUnits.Add(fields[0]);
                }
                return fields[0];
            }
            if (fields[0] == -1)
            {
                return null;
            }
            if (Environment.TickCount64 > deadline)
            {
                throw new PsException(PsErrorCode.Timeout, $"worker {nodeId} waited {options.BarrierTimeout.TotalSeconds:0} s for the other workers' units to finish or come back");
            }
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reports a unit done; false when another worker finished it first (a backup of a slow unit).</summary>
    public async Task<bool> CompleteWorkAsync(int unit, CancellationToken cancellationToken)
    {
        // The round the unit was claimed in goes along: a completion that arrives after its round ended counts for nothing.
        var reply = await scheduler.CallAsync(MessageType.CompleteWork, ControlMessages.Ints(unit, WorkCounts.Round), $"the completion of work unit {unit}", options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        lock (_heldUnits)
        {
            _heldUnits.Remove(unit);
        }
        return ControlMessages.ReadInts(reply.Payload, 1)[0] == 1;
    }

    /// <summary>Tells the scheduler this worker is done (the caller has waited for its calls first).</summary>
    public async Task FinishAsync(CancellationToken cancellationToken)
    {
        if (!scheduler.IsClosed && shutdown.Reason is null)
        {
            await scheduler.CallAsync(MessageType.Finish, ReadOnlyMemory<byte>.Empty, "the end of this worker", options.RequestTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }
}

/// <summary>
/// The job's work queue, as a worker last saw it: units done, dropped, reassigned, backed up, every completion
/// reported, and the round (<see cref="PsClient.DeclareWorkRoundAsync"/>) the last claimed unit belongs to.
/// </summary>
public readonly record struct WorkProgress(int Completed, int Dropped, int Reassigned, int Backups, int Completions, int Round = 0);
