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
        int units = ControlMessages.ReadInts(payload, 1)[0];
        if (units < 1)
        {
            throw new ArgumentException($"a job's work needs at least one unit, got {units}");
        }
        if (_work is null)
        {
            _work = new WorkQueue(units, _options.OnWorkerFailure, _options.BackupAfter);
            _log.LogWorkDeclared(units,
                _options.OnWorkerFailure == WorkerFailurePolicy.Reassign ? "reassigned" : "dropped");
        }
        else if (_work.Units != units)
        {
            outbox.Add(Error(connection, header, ErrorCode.Conflict, $"the job's work was declared as {_work.Units} units, not {units}"));
            return;
        }
        outbox.Add(Reply(connection, header, ControlMessages.Ints(units)));
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
        ReplyWhenDurable(Reply(connection, header, ControlMessages.Ints(claim.Unit, claim.Backup ? 1 : 0, _work.Completed, _work.Dropped, _work.Reassigned, _work.Backups, _work.Completions)), outbox);
    }

    private void OnCompleteWork(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        if (_work is null)
        {
            outbox.Add(Error(connection, header, ErrorCode.NotReady, "no work was declared"));
            return;
        }
        int worker = connection.Tag is NodeState node ? node.Id : -1;
        bool first = _work.Complete(ControlMessages.ReadInts(payload, 1)[0], worker);
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
