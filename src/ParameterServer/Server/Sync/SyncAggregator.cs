using System.Buffers;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;
using ParameterServer.Transport;

namespace ParameterServer.Server.Sync;

/// <summary>
/// Sync mode: the pushes of all live workers for one round (the per-table push sequence each worker carries
/// in <see cref="FrameHeader.Round"/>) are summed here, applied through the handler once, and only then
/// acknowledged. Holding the acks is what bounds how far a worker can run ahead: with bounded delay tau it
/// cannot send round r before its round r - tau - 1 was acknowledged, i.e. applied for every worker.
/// </summary>
internal sealed class SyncAggregator(TableStore store)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<long, Round> _rounds = new();
    private readonly Stack<Round> _pool = new();
    private long _completedRounds;
    private long _maxLead;
    private long _roundsApplied;

    /// <summary>An acknowledgement owed to a worker once its round is applied.</summary>
    internal readonly record struct PendingAck(Connection Connection, FrameHeader Request, ulong[]? Keys, int KeyCount);

    /// <summary>
    /// A round applied here: the acks it owes and, for replication after aggregation, its aggregate (pooled arrays,
    /// <see cref="Release"/> them once forwarded).
    /// </summary>
    internal sealed record RoundDone(long Round, List<PendingAck> Acks, ulong[] Keys, float[] Values, int Count)
    {
        public void Release()
        {
            ArrayPool<ulong>.Shared.Return(Keys);
            ArrayPool<float>.Shared.Return(Values);
        }
    }

    /// <summary>One worker's push of a round, copied out of the receive buffer (pooled arrays).</summary>
    private readonly record struct Contribution(int Sender, ulong[] Keys, float[] Values, int KeyCount);

    private sealed class Round(int width)
    {
        public readonly SparseRowStore Sum = new(width);
        public readonly HashSet<int> Senders = new();
        public readonly List<PendingAck> Acks = new();
        public readonly List<Contribution> Contributions = new();
    }

    /// <summary>The largest number of rounds still open below a round when it received a push (what bounded delay limits).</summary>
    public long MaxLead
    {
        get
        {
            lock (_gate)
            {
                return _maxLead;
            }
        }
    }

    public long RoundsApplied
    {
        get
        {
            lock (_gate)
            {
                return _roundsApplied;
            }
        }
    }

    /// <summary>
    /// Adds one worker's push; returns the acks to send if it completed its round (and any later complete rounds).
    /// <paramref name="late"/>: the round was applied here already (a push refused by a server that handed its keys
    /// over, sent again): the caller applies it on its own.
    /// </summary>
    public List<RoundDone>? Add(Connection connection, in FrameHeader request, KeyList keys, ReadOnlySpan<float> values, Participants workers, out bool late)
    {
        lock (_gate)
        {
            long round = request.Round;
            late = round < _completedRounds && !_rounds.ContainsKey(round);
            if (late)
            {
                return null;
            }
            _firstRound.TryAdd(request.SenderId, round);
            _maxLead = Math.Max(_maxLead, round - _completedRounds);
            if (!_rounds.TryGetValue(round, out var r))
            {
                r = _pool.Count > 0 ? _pool.Pop() : new Round(store.Width);
                _rounds[round] = r;
            }
            // Keep each worker's push apart and sum them in sender order when the round completes, so the
            // result does not depend on arrival order (float addition is not associative).
            int width = store.Width;
            var keyCopy = ArrayPool<ulong>.Shared.Rent(Math.Max(keys.Count, 1));
            for (int i = 0; i < keys.Count; i++)
            {
                keyCopy[i] = keys[i];
            }
            var valueCopy = ArrayPool<float>.Shared.Rent(Math.Max(values.Length, 1));
            values.CopyTo(valueCopy);
            r.Contributions.Add(new Contribution(request.SenderId, keyCopy, valueCopy, keys.Count));
            r.Senders.Add(request.SenderId);
            r.Acks.Add(new PendingAck(connection, request, request.Type == MessageType.PushPull ? keyCopy[..keys.Count] : null, keys.Count));
            return CompleteReady(workers);
        }
    }

    /// <summary>The workers whose pushes a round waits for; <see cref="JoinedServer"/>: see <see cref="CompleteReady"/>.</summary>
    internal sealed record Participants(int[] WorkerIds, bool JoinedServer);

    private readonly Dictionary<int, long> _firstRound = new(); // the first round each worker pushed here

    /// <summary>
    /// A server that owns keys no longer (its ranges moved): every push of an open round that holds such keys is taken
    /// out of its round and returned, to be refused (WrongOwner). Its worker sends it again cut by the new view, so
    /// each part joins its round at its keys' new owner, which applies nothing twice since nothing of it was applied.
    /// </summary>
    public List<PendingAck> TakeMoved(Func<ulong, bool> owned, Participants workers, out List<RoundDone>? completed)
    {
        var refused = new List<PendingAck>();
        lock (_gate)
        {
            foreach (var r in _rounds.Values)
            {
                for (int i = r.Contributions.Count - 1; i >= 0; i--)
                {
                    var c = r.Contributions[i];
                    bool moved = false;
                    for (int k = 0; k < c.KeyCount && !moved; k++)
                    {
                        moved = !owned(c.Keys[k]);
                    }
                    if (!moved)
                    {
                        continue;
                    }
                    refused.Add(r.Acks[i]);
                    r.Contributions.RemoveAt(i);
                    r.Acks.RemoveAt(i);
                    ArrayPool<ulong>.Shared.Return(c.Keys);
                    ArrayPool<float>.Shared.Return(c.Values);
                    if (!r.Contributions.Any(other => other.Sender == c.Sender))
                    {
                        r.Senders.Remove(c.Sender);
                    }
                }
            }
            completed = CompleteReady(workers);
        }
        return refused;
    }

    /// <summary>
    /// A worker's push resent after its server was lost, carrying keys this server took over: joined to its round when
    /// that round is still open here (it does not count as the worker's own push of the round), acknowledged with it.
    /// False when the round was applied here already: the caller applies it on its own.
    /// </summary>
    public bool TryAddResent(Connection connection, in FrameHeader request, KeyList keys, ReadOnlySpan<float> values)
    {
        lock (_gate)
        {
            long round = request.Round;
            if (round < _completedRounds && !_rounds.ContainsKey(round))
            {
                return false;
            }
            if (!_rounds.TryGetValue(round, out var r))
            {
                r = _pool.Count > 0 ? _pool.Pop() : new Round(store.Width);
                _rounds[round] = r;
            }
            var keyCopy = ArrayPool<ulong>.Shared.Rent(Math.Max(keys.Count, 1));
            for (int i = 0; i < keys.Count; i++)
            {
                keyCopy[i] = keys[i];
            }
            var valueCopy = ArrayPool<float>.Shared.Rent(Math.Max(values.Length, 1));
            values.CopyTo(valueCopy);
            r.Contributions.Add(new Contribution(request.SenderId, keyCopy, valueCopy, keys.Count));
            r.Acks.Add(new PendingAck(connection, request, request.Type == MessageType.PushPull ? keyCopy[..keys.Count] : null, keys.Count));
            return true;
        }
    }

    private readonly Dictionary<int, long> _roundsFrom = new(); // per worker: its rounds below this never come here

    /// <summary>
    /// A worker says its pushes of rounds below <paramref name="round"/> were cut by views without this server (it
    /// joined since): its rounds here need not wait for them. Returns rounds that this completes.
    /// </summary>
    public List<RoundDone>? NoteRoundsFrom(int worker, long round, Participants workers)
    {
        lock (_gate)
        {
            _roundsFrom[worker] = _roundsFrom.TryGetValue(worker, out long known) ? Math.Max(known, round) : round;
            return CompleteReady(workers);
        }
    }

    /// <summary>Re-checks open rounds after the live workers changed (a worker joined, left or died).</summary>
    public List<RoundDone>? OnLiveWorkersChanged(Participants workers)
    {
        lock (_gate)
        {
            return CompleteReady(workers);
        }
    }

    /// <summary>
    /// A round is complete when every live worker pushed it here. A server that joined the running job also counts a
    /// worker whose first push here was of a later round, or that said its pushes of this round were cut by views
    /// without this server (<see cref="NoteRoundsFrom"/>).
    /// </summary>
    private bool Complete(Round r, long round, Participants workers)
    {
        if (workers.WorkerIds.Length == 0)
        {
            return r.Senders.Count > 0;
        }
        foreach (int id in workers.WorkerIds)
        {
            if (!r.Senders.Contains(id) && !(workers.JoinedServer && _firstRound.TryGetValue(id, out long first) && first > round)
                && !(_roundsFrom.TryGetValue(id, out long from) && round < from))
            {
                return false;
            }
        }
        return true;
    }

    private List<RoundDone>? CompleteReady(Participants workers)
    {
        List<RoundDone>? done = null;
        foreach (long round in _rounds.Keys.Order().ToList())
        {
            var r = _rounds[round];
            if (!Complete(r, round, workers))
            {
                break; // rounds complete in order
            }
            r.Contributions.Sort((a, b) => a.Sender.CompareTo(b.Sender));
            int width = store.Width;
            foreach (var c in r.Contributions)
            {
                for (int i = 0; i < c.KeyCount; i++)
                {
                    UpdateHandlers.SumOf(store.Info.Element).Apply(r.Sum.GetOrAddRow(c.Keys[i]), c.Values.AsSpan(i * width, width), width);
                }
                ArrayPool<ulong>.Shared.Return(c.Keys);
                ArrayPool<float>.Shared.Return(c.Values);
            }
            r.Contributions.Clear();
            int count = r.Sum.Count;
            var keys = ArrayPool<ulong>.Shared.Rent(Math.Max(count, 1));
            var values = ArrayPool<float>.Shared.Rent(Math.Max(count * width, 1));
            int n = 0;
            foreach (var entry in r.Sum)
            {
                keys[n++] = entry.Key;
            }
            Array.Sort(keys, 0, count); // replicas take sorted keys
            for (int i = 0; i < count; i++)
            {
                var row = r.Sum.GetRowOrEmpty(keys[i]);
                store.ApplyOne(keys[i], row);
                row.CopyTo(values.AsSpan(i * width, width));
            }
            (done ??= new List<RoundDone>()).Add(new RoundDone(round, new List<PendingAck>(r.Acks), keys, values, count));
            _rounds.Remove(round);
            _completedRounds = Math.Max(_completedRounds, round + 1);
            _roundsApplied++;
            r.Sum.Clear();
            r.Senders.Clear();
            r.Acks.Clear();
            _pool.Push(r);
        }
        return done;
    }
}
