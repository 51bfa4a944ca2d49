using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Server.Replication;
using ParameterServer.Server.Store;
using ParameterServer.Transport;

namespace ParameterServer.Server.Sync;

/// <summary>
/// Sync tables on this server: pushes join their table's round (<see cref="SyncAggregator"/>), a completed round is
/// applied once, forwarded to the other copies as one aggregate (replication after aggregation) and then acknowledged
/// to every worker. Owns who takes part in rounds (the live workers, and whether this server joined mid-job); handles
/// resends into a failover, pushes of keys that moved away, and workers' notes of rounds cut without this server.
/// </summary>
internal sealed class SyncRounds(LocalServer self, ViewGate gate, Answers answers, TableSet tables, ChainReplicator replication)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;
    private readonly Answers _answers = answers;
    private readonly TableSet _tables = tables;
    private readonly ChainReplicator _replication = replication;
    private volatile SyncAggregator.Participants _participants = new([], false);

    /// <summary>Who takes part in rounds: the live workers, and whether this server joined mid-job.</summary>
    public SyncAggregator.Participants Participants => _participants;

    public void SetParticipants(SyncAggregator.Participants participants) => _participants = participants;

    /// <summary>A push joins its round; a round completing here is applied and forwarded here, under the view it was checked by (caller holds the gate).</summary>
    public void Add(Connection connection, in FrameHeader header, TableStore table, SyncAggregator sync, KeyList keys, ReadOnlySpan<float> values, out bool late)
    {
        if (sync.Add(connection, header, keys, values, _participants, out late) is { } rounds)
        {
            FinishRounds(table, rounds, lockHeld: true);
        }
    }

    /// <summary>The live workers changed: rounds waiting only for departed workers complete (caller holds no lock).</summary>
    public void OnLiveWorkersChanged(TableStore?[] tables, SyncAggregator.Participants participants)
    {
        foreach (var t in tables)
        {
            _gate.EnterApply();
            try
            {
                if (t?.Aggregator?.OnLiveWorkersChanged(participants) is { } rounds)
                {
                    FinishRounds(t, rounds, lockHeld: true);
                }
            }
            finally
            {
                _gate.ExitApply();
            }
        }
    }

    /// <summary>A worker's note that its sync rounds below header.Round were cut without this server (no answer).</summary>
    public void HandleRoundsFrom(in FrameHeader header)
    {
        var table = _tables.ForRequest(header, out _);
        if (table?.Aggregator is not { } aggregator)
        {
            _self.Log.LogRoundsMarkerForUnknownTable(_self.Id, header.SenderId, header.TableId);
            return;
        }
        _gate.EnterApply();
        try
        {
            if (aggregator.NoteRoundsFrom(header.SenderId, header.Round, _participants) is { } rounds)
            {
                FinishRounds(table, rounds, lockHeld: true);
            }
        }
        finally
        {
            _gate.ExitApply();
        }
    }

    /// <summary>
    /// A sync push resent after its server (Aux) was lost, with keys this server took over. If the lost server's
    /// aggregate of that round reached this copy, it is applied already: acknowledge only. Else it joins its round
    /// here, or, when that round is applied here already, is applied (and replicated) on its own.
    /// </summary>
    public void HandleSyncResend(Connection connection, in FrameHeader header, ClusterView view, TableStore table, SyncAggregator aggregator, KeyList keys, ReadOnlySpan<float> values)
    {
        if (_replication.WasApplied((int)header.Aux, (ulong)header.Round))
        {
            _replication.CountSkipped(keys.Count); // the lost server's aggregate of this round is here
        }
        else if (aggregator.TryAddResent(connection, header, keys, values))
        {
            return; // acknowledged with its round
        }
        else
        {
            ApplyAlone(connection, header, view, table, keys, values);
            return;
        }
        if (header.Type == MessageType.PushPull)
        {
            _answers.SendValues(connection, header, table, keys);
        }
        else
        {
            _answers.SendAck(connection, header);
        }
    }

    /// <summary>A sync push whose round was applied here already: applied (and replicated) on its own, then acknowledged.</summary>
    private void ApplyAlone(Connection connection, in FrameHeader header, ClusterView view, TableStore table, KeyList keys, ReadOnlySpan<float> values)
    {
        var plain = header;
        plain.Flags &= ~FrameFlags.Resend; // from here on an ordinary push of this worker (recorded by its request id)
        if (view.ChainLength > 1 ? _replication.ApplyReplicated(connection, plain, table, keys, values) : _replication.ApplyPlain(table, keys, values))
        {
            return; // acknowledged when the replicas have it
        }
        if (header.Type == MessageType.PushPull)
        {
            _answers.SendValues(connection, header, table, keys);
        }
        else
        {
            _answers.SendAck(connection, header);
        }
    }

    /// <summary>
    /// Sync rounds applied here: with replication their aggregate goes to the other copies first (replication after
    /// aggregation: one forward per round, however many workers pushed), then the workers are acknowledged.
    /// </summary>
    public void FinishRounds(TableStore table, List<SyncAggregator.RoundDone> rounds, bool lockHeld = false)
    {
        // Callers that completed the rounds under the update gate pass it on (lockHeld): the aggregate then goes to the
        // copies of the view it was applied under, even if a new view is waiting to be installed.
        foreach (var round in rounds)
        {
            try
            {
                bool deferred = false;
                if (_gate.Current is { ChainLength: > 1 } && round.Count > 0)
                {
                    // Recorded by the replicas as (this server, round): a worker resending into a failover can tell it was applied.
                    var header = new FrameHeader { Type = MessageType.Push, SenderId = _self.Id, RequestId = (ulong)round.Round, TableId = table.Info.Id, ElementType = table.Info.ElementType, RowWidth = table.Width };
                    if (!lockHeld)
                    {
                        _gate.EnterApply();
                    }
                    try
                    {
                        // A round's aggregate is a sum of pushes: not exact in fp16 even when each push was.
                        var pushCodec = ReplicaFrames.t_forwardCodec;
                        ReplicaFrames.t_forwardCodec = pushCodec is { } c ? c with { Quantization = Quantization.None } : null;
                        try
                        {
                            deferred = _replication.ForwardApplied(null, header, table, KeyList.Of(round.Keys.AsSpan(0, round.Count)), round.Values.AsSpan(0, round.Count * table.Width), null, round.Acks);
                        }
                        finally
                        {
                            ReplicaFrames.t_forwardCodec = pushCodec;
                        }
                    }
                    finally
                    {
                        if (!lockHeld)
                        {
                            _gate.ExitApply();
                        }
                    }
                }
                if (!deferred)
                {
                    _answers.SendAcks(table, round.Acks);
                }
            }
            finally
            {
                round.Release();
            }
        }
    }

    /// <summary>
    /// Under a view where this server no longer owns some keys, the pushes of open sync rounds that hold such keys are
    /// taken out of their rounds (under the update gate's write side, with the view's installation); they are then
    /// refused (WrongOwner): nothing of them was applied, and their workers send them again to the new owners.
    /// </summary>
    public List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? TakeMovedSyncPushes(ClusterView view, TableStore?[] tables, SyncAggregator.Participants participants)
    {
        int mySlot = view.SlotOfServer(_self.Id);
        List<(TableStore, List<SyncAggregator.PendingAck>)>? refused = null;
        foreach (var table in tables)
        {
            if (table?.Aggregator is not { } aggregator || view.FindTable(table.Info.Id) is null)
            {
                continue;
            }
            var placement = view.PlacementOf(table.Info);
            var acks = aggregator.TakeMoved(key => mySlot >= 0 && placement.SlotOf(key) == mySlot, participants, out var rounds);
            if (rounds is not null)
            {
                FinishRounds(table, rounds, lockHeld: true);
            }
            if (acks.Count > 0)
            {
                (refused ??= new()).Add((table, acks));
            }
        }
        return refused;
    }

    public void RefuseMovedSyncPushes(ClusterView view, List<(TableStore Table, List<SyncAggregator.PendingAck> Acks)>? refused)
    {
        foreach (var (table, acks) in refused ?? [])
        {
            foreach (var ack in acks)
            {
                try
                {
                    _answers.SendError(ack.Connection, ack.Request, ErrorCode.WrongOwner, $"server {_self.Id} handed keys of this push over to their new owner under view {view.Number}; send it there");
                }
                catch (TransportException)
                {
                }
            }
            _self.Log.LogMovedRoundPushesRefused(_self.Id, acks.Count, table.Info.Name);
        }
    }
}
