namespace ParameterServer.Scheduler.JobControl;

/// <summary>The answer to a claim: a unit to do, or none for now (ask again), or none at all (the work is done).</summary>
internal readonly record struct Claim(int Unit, bool Backup)
{
    public const int AskAgain = -2;
    public const int Done = -1;
}

/// <summary>
/// The job's work, cut into numbered units that workers claim one at a time from the scheduler (so a slow or dead
/// worker holds back only the units it claimed). A job may give its work in rounds (a batch solver's iterations): each
/// round is a fresh queue, declared once the previous one is done. Pure bookkeeping under the scheduler's lock.
/// </summary>
internal sealed class WorkQueue(int units, WorkerFailurePolicy policy, TimeSpan backupAfter, int round = 0)
{
    /// <summary>Which round of the job's work this is (0 for a job that declares its work once).</summary>
    public int Round { get; } = round;

    // Pending units: those given back (a worker died, a restart) and every unit from _nextFresh on that is not done,
    // dropped or claimed. Counted, not listed: a declaration costs nothing whatever its size.
    private readonly Queue<int> _returned = new();
    private int _nextFresh;
    private readonly Dictionary<int, (int Worker, long Since, bool BackedUp)> _claimed = new();
    private readonly HashSet<int> _completed = new();
    private readonly HashSet<int> _dropped = new();

    public int Units { get; } = units;

    /// <summary>Units given again after their worker died.</summary>
    public int Reassigned { get; private set; }

    /// <summary>Units given to a second worker because the first was slow (first completion wins).</summary>
    public int Backups { get; private set; }

    private readonly HashSet<(int Unit, int Worker)> _completions = new();

    /// <summary>Completions reported, one per (unit, worker): a backed-up unit done by two workers counts twice, a report repeated after a reconnect once.</summary>
    public int Completions => _completions.Count;

    public int Completed => _completed.Count;

    public int Dropped => _dropped.Count;

    public bool IsDone => _completed.Count + _dropped.Count == Units;

    public Claim ClaimFor(int worker, long now)
    {
        if (TryTakePending(out int unit))
        {
            _claimed[unit] = (worker, now, false);
            return new Claim(unit, false);
        }
        if (IsDone)
        {
            return new Claim(Claim.Done, false);
        }
        if (backupAfter > TimeSpan.Zero)
        {
            foreach (var (u, c) in _claimed)
            {
                if (!c.BackedUp && c.Worker != worker && now - c.Since > (long)backupAfter.TotalMilliseconds)
                {
                    _claimed[u] = (c.Worker, c.Since, true); // one backup per unit; the first to finish wins
                    Backups++;
                    return new Claim(u, true);
                }
            }
        }
        return new Claim(Claim.AskAgain, false);
    }

    /// <summary>Records a completion by a worker; true when it is the first for the unit.</summary>
    public bool Complete(int unit, int worker)
    {
        if ((uint)unit >= (uint)Units)
        {
            throw new ArgumentOutOfRangeException(nameof(unit), unit, $"the job has units 0 .. {Units - 1}");
        }
        _completions.Add((unit, worker));
        _claimed.Remove(unit);
        return _completed.Add(unit) && !_dropped.Contains(unit);
    }

    /// <summary>A worker died: its unfinished units are reassigned or dropped, by policy. Returns them.</summary>
    public List<int> OnWorkerDied(int worker)
    {
        var lost = _claimed.Where(c => c.Value.Worker == worker && !_completed.Contains(c.Key)).Select(c => c.Key).Order().ToList();
        foreach (int unit in lost)
        {
            _claimed.Remove(unit);
            if (policy == WorkerFailurePolicy.Reassign)
            {
                _returned.Enqueue(unit);
                Reassigned++;
            }
            else
            {
                _dropped.Add(unit);
            }
        }
        return lost;
    }

    /// <summary>The queue as the scheduler persists it.</summary>
    public PersistedWork Export() => new(Units, _completed.Order().ToArray(), _dropped.Order().ToArray(),
        _claimed.Select(c => new[] { c.Key, c.Value.Worker }).ToArray(), Reassigned, Backups,
        _completions.Select(c => new[] { c.Unit, c.Worker }).ToArray(), Round, (int)backupAfter.TotalMilliseconds);

    /// <summary>A queue as persisted: units neither done, dropped nor claimed are pending again.</summary>
    public static WorkQueue Import(PersistedWork saved, WorkerFailurePolicy policy, TimeSpan backupAfter, long now)
    {
        var queue = new WorkQueue(saved.Units, policy, saved.BackupAfterMs > 0 ? TimeSpan.FromMilliseconds(saved.BackupAfterMs) : backupAfter, saved.Round) { Reassigned = saved.Reassigned, Backups = saved.Backups };
        foreach (var pair in saved.Completions)
        {
            queue._completions.Add((pair[0], pair[1]));
        }
        queue._completed.UnionWith(saved.Completed);
        queue._dropped.UnionWith(saved.Dropped);
        foreach (var pair in saved.Claimed)
        {
            queue._claimed[pair[0]] = (pair[1], now, false);
        }
        return queue; // the rest are pending: TryTakePending skips what is done, dropped or claimed
    }

    /// <summary>
    /// The next pending unit: units not yet handed out in order, then those given back, in the order they were. A unit
    /// given back before the scan reached it (claimed when a restarted scheduler took the queue in) is taken once:
    /// whichever way comes second finds it claimed or done and skips it.
    /// </summary>
    private bool TryTakePending(out int unit)
    {
        while (_nextFresh < Units)
        {
            unit = _nextFresh++;
            if (IsPending(unit))
            {
                return true;
            }
        }
        while (_returned.TryDequeue(out unit))
        {
            if (IsPending(unit))
            {
                return true;
            }
        }
        return false;
    }

    private bool IsPending(int unit) => !_completed.Contains(unit) && !_dropped.Contains(unit) && !_claimed.ContainsKey(unit);

    /// <summary>A worker rejoined a restarted scheduler holding <paramref name="held"/>: its other claims are given out again.</summary>
    public void OnWorkerRejoined(int worker, IReadOnlyCollection<int> held)
    {
        foreach (var (unit, claim) in _claimed.Where(c => c.Value.Worker == worker && !held.Contains(c.Key)).ToList())
        {
            _claimed.Remove(unit);
            _returned.Enqueue(unit);
        }
    }
}

/// <summary>A work queue on disk.</summary>
internal sealed record PersistedWork(int Units, int[] Completed, int[] Dropped, int[][] Claimed, int Reassigned, int Backups, int[][] Completions, int Round = 0, int BackupAfterMs = 0);
