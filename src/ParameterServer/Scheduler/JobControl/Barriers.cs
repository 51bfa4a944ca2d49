using ParameterServer.Scheduler.Membership;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler.JobControl;

/// <summary>
/// The job's barriers: workers wait at numbered barriers (a worker's n-th is the job's barrier BarrierBase + n, so one
/// that joined late lines up with the next), and a barrier is released once every live, unfinished worker that
/// should take part has arrived. Called under the scheduler's lock.
/// </summary>
internal sealed class Barriers
{
    private readonly List<Waiter> _waiting = new();

    /// <summary>A worker waiting at barrier number <paramref name="Generation"/> of the job.</summary>
    private sealed record Waiter(int NodeId, Connection Connection, ulong RequestId, long Generation);

    /// <summary>Barriers released so far (kept in the scheduler's metadata).</summary>
    public long Released { get; private set; }

    public bool AnyWaiting => _waiting.Count > 0;

    /// <summary>After a scheduler restart: the number of barriers the job had passed.</summary>
    public void Restore(long released) => Released = released;

    public void Arrive(int nodeId, Connection connection, ulong requestId, long generation)
    {
        _waiting.RemoveAll(b => b.NodeId == nodeId && b.Generation == generation); // a call resent after a rejoin
        _waiting.Add(new Waiter(nodeId, connection, requestId, generation));
    }

    /// <summary>
    /// Releases every barrier that <paramref name="workers"/> (the live, unfinished ones) have all reached, in order;
    /// returns the calls to answer, each with the number of workers released with it.
    /// </summary>
    public List<(Connection Connection, ulong RequestId, int Count)> Release(IEnumerable<NodeState> workers)
    {
        var answers = new List<(Connection, ulong, int)>();
        var candidates = workers.ToList();
        while (_waiting.Count > 0)
        {
            long next = Released + 1;
            var needed = candidates.Where(n => n.BarrierBase < next).Select(n => n.Id).ToList();
            var arrived = _waiting.Where(b => b.Generation <= next).ToList();
            if (!needed.All(id => arrived.Any(b => b.NodeId == id)))
            {
                break;
            }
            foreach (var waiter in arrived)
            {
                answers.Add((waiter.Connection, waiter.RequestId, arrived.Count));
            }
            _waiting.RemoveAll(arrived.Contains);
            Released = next;
        }
        return answers;
    }
}
