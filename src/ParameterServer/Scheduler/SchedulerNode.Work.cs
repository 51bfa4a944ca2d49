using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.JobControl;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>The work queue: units claimed by workers one at a time, given back or dropped when a worker dies.</summary>
public sealed partial class SchedulerNode
{
    private WorkQueue? _work; // under _lock

    private void OnDeclareWork(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        // [units] for a job's one declaration, or [units, round, backup after ms] for a round of a job that works in rounds.
        int[] fields = ControlMessages.ReadInts(payload, payload.Length >= 12 ? 3 : 1);
        int units = fields[0];
        int round = fields.Length > 1 ? fields[1] : 0;
        var backupAfter = fields.Length > 1 && fields[2] > 0 ? TimeSpan.FromMilliseconds(fields[2]) : _options.BackupAfter;
        if (units < 1 || round < 0)
        {
            throw new ArgumentException($"a job's work needs at least one unit and a round >= 0, got {units} units in round {round}");
        }
        if (_work is null || (round > _work.Round && _work.IsDone))
        {
            _work = new WorkQueue(units, _options.OnWorkerFailure, backupAfter, round);
            if (round == 0)
            {
                _log.LogWorkDeclared(units,
                    _options.OnWorkerFailure == WorkerFailurePolicy.Reassign ? "reassigned" : "dropped");
            }
        }
        else if (round > _work.Round)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict, $"round {round} of the job's work cannot start: round {_work.Round} has {_work.Units - _work.Completed - _work.Dropped} of {_work.Units} units not done"));
            return;
        }
        else if (_work.Units != units || _work.Round != round)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict, $"the job's work was declared as {_work.Units} units in round {_work.Round}, not {units} in round {round}"));
            return;
        }
        ReplyWhenDurable(Reply(connection, header, ControlMessages.Ints(units)), outbox);
    }

    private void OnClaimWork(Connection connection, in FrameHeader header, List<Outgoing> outbox)
    {
        if (_work is null || connection.Tag is not NodeState { Role: NodeRole.Worker } node)
        {
            outbox.Add(Error(connection, header, ErrorCode.NotReady, "no work was declared (PsClient.DeclareWorkAsync) or the caller is not a registered worker"));
            return;
        }
        // A draining worker is told the work is done: its app winds down and the unit it had is finished first.
        var claim = node.Draining ? new Claim(Claim.Done, false) : _work.ClaimFor(node.Id, NowMs);
        if (claim.Backup)
        {
            _log.LogBackupStarted(claim.Unit, node.Info.Describe());
        }
        ReplyWhenDurable(Reply(connection, header, ControlMessages.Ints(claim.Unit, claim.Backup ? 1 : 0, _work.Completed, _work.Dropped, _work.Reassigned, _work.Backups, _work.Completions, _work.Round)), outbox);
    }

    private void OnCompleteWork(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        if (_work is null)
        {
            outbox.Add(Error(connection, header, ErrorCode.NotReady, "no work was declared"));
            return;
        }
        int worker = connection.Tag is NodeState node ? node.Id : -1;
        // [unit] or [unit, round]: a unit of a round already over (a backup's loser, finishing late) is not first.
        int[] fields = ControlMessages.ReadInts(payload, payload.Length >= 8 ? 2 : 1);
        bool first = (fields.Length < 2 || fields[1] == _work.Round) && _work.Complete(fields[0], worker);
        ReplyWhenDurable(Reply(connection, header, ControlMessages.Ints(first ? 1 : 0)), outbox);
    }

    private void OnWorkerDied(NodeState node)
    {
        if (_work is null || node.Role != NodeRole.Worker)
        {
            return;
        }
        var lost = _work.OnWorkerDied(node.Id);
        if (lost.Count > 0)
        {
            _log.LogWorkLost(node.Info.Describe(), string.Join(", ", lost),
                _options.OnWorkerFailure == WorkerFailurePolicy.Reassign ? "given to the other workers" : "dropped");
        }
    }
}
