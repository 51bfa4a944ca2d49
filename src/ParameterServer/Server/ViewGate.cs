using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;

namespace ParameterServer.Server;

/// <summary>
/// The order of updates against views, copies and snapshots. Owns the current view (and the recent ones a resend may
/// name) and the lock that orders them: a push is checked, applied and forwarded under its read side
/// (<see cref="EnterApply"/>); installing a view, copying a block to a new replica and taking a checkpoint's snapshot
/// take its write side (<see cref="EnterExclusive"/>), so each push is wholly before or wholly after them. Large pushes
/// applied piece by piece as they arrive (outside the lock) are paused the same way.
/// </summary>
internal sealed class ViewGate
{
    private readonly ReaderWriterLockSlim _order = new(LockRecursionPolicy.NoRecursion);
    private readonly ReaderWriterLockSlim _replicaApplies = new(LockRecursionPolicy.NoRecursion);
    private readonly Dictionary<uint, ClusterView> _recent = new();
    private volatile ClusterView? _current;
    private int _streamPauses; // snapshots and view changes under way: no new streamed applies meanwhile
    private int _streamedApplies; // large pushes being applied piece by piece, outside the lock

    /// <summary>The newest view installed (null before the first).</summary>
    public ClusterView? Current => _current;

    public void EnterApply() => _order.EnterReadLock();

    public void ExitApply() => _order.ExitReadLock();

    public void EnterExclusive() => _order.EnterWriteLock();

    public void ExitExclusive() => _order.ExitWriteLock();

    /// <summary>Makes <paramref name="view"/> current; the caller holds the write side.</summary>
    public void Install(ClusterView view) => _current = view;

    /// <summary>Remembers a view by number (the last 64): a resend names the view its keys were first cut by.</summary>
    public void Remember(ClusterView view)
    {
        lock (_recent)
        {
            _recent[view.Number] = view;
            if (_recent.Count > 64)
            {
                _recent.Remove(_recent.Keys.Min());
            }
        }
    }

    /// <summary>A recent view by number, or null when it was never seen or is too old.</summary>
    public ClusterView? Recent(uint number)
    {
        lock (_recent)
        {
            return _recent.GetValueOrDefault(number);
        }
    }

    /// <summary>Whether <paramref name="server"/> held <paramref name="key"/> under view <paramref name="viewNumber"/> (false when the view is unknown).</summary>
    public bool HeldUnder(uint viewNumber, TableStore table, ulong key, int server)
    {
        var old = Recent(viewNumber);
        int slot = old?.SlotOfServer(server) ?? -1;
        if (old is null || slot < 0)
        {
            return false;
        }
        var placement = old.PlacementOf(table.Info);
        Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
        int n = placement.ChainOfBlock(table.Info.BlockOf(key), chain);
        return chain[..n].Contains(slot);
    }

    /// <summary>Per key, whether <paramref name="server"/> held it under view <paramref name="viewNumber"/>; null when the view is unknown, or it held no block of the table then.</summary>
    public bool[]? HeldUnder(uint viewNumber, TableStore table, KeyList keys, int server)
    {
        var old = Recent(viewNumber);
        int slot = old?.SlotOfServer(server) ?? -1;
        if (old is null || slot < 0 || old.FindTable(table.Info.Id) is null)
        {
            return null;
        }
        var placement = old.PlacementOf(table.Info);
        Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
        var held = new bool[keys.Count];
        for (int i = 0; i < keys.Count; i++)
        {
            int n = placement.ChainOfBlock(table.Info.BlockOf(keys[i]), chain);
            held[i] = chain[..n].Contains(slot);
        }
        return held;
    }

    /// <summary>WrongOwner when server <paramref name="self"/> is not the primary of every key under <paramref name="view"/>.</summary>
    public static (ErrorCode Code, string Message)? OwnerProblem(ClusterView view, int self, TableStore table, KeyList keys)
    {
        var placement = view.PlacementOf(table.Info);
        int mySlot = view.SlotOfServer(self);
        for (int i = 0; i < keys.Count; i++)
        {
            if (placement.SlotOf(keys[i]) != mySlot)
            {
                int owner = view.Servers[placement.SlotOf(keys[i])].Id;
                return (ErrorCode.WrongOwner, $"key {keys[i]} of table '{table.Info.Name}' belongs to server {owner} under view {view.Number}, not server {self}");
            }
        }
        return null;
    }

    /// <summary>
    /// A large push may be applied piece by piece unless a snapshot is being taken or a view installed (then it goes
    /// whole, under the lock): both need every push either wholly before them or wholly after.
    /// </summary>
    public bool TryEnterStreamedApply()
    {
        if (Volatile.Read(ref _streamPauses) > 0)
        {
            return false;
        }
        Interlocked.Increment(ref _streamedApplies);
        if (Volatile.Read(ref _streamPauses) > 0)
        {
            Interlocked.Decrement(ref _streamedApplies);
            return false;
        }
        return true;
    }

    public void ExitStreamedApply() => Interlocked.Decrement(ref _streamedApplies);

    /// <summary>Stops new streamed applies and waits (up to 10 s) for those under way; undo with <see cref="ResumeStreamedApplies"/>.</summary>
    public void PauseStreamedApplies()
    {
        Interlocked.Increment(ref _streamPauses);
        long deadline = Environment.TickCount64 + 10_000;
        while (Volatile.Read(ref _streamedApplies) > 0)
        {
            if (Environment.TickCount64 > deadline)
            {
                Interlocked.Decrement(ref _streamPauses);
                throw new IOException("a large push being applied piece by piece did not finish within 10 s");
            }
            Thread.Sleep(1);
        }
    }

    public void ResumeStreamedApplies() => Interlocked.Decrement(ref _streamPauses);

    /// <summary>
    /// A replica applies a forward between these, having checked its sender against <see cref="Current"/>. Not the
    /// update lock: a replica's receive thread must never wait on a view change whose pushes wait on this server's
    /// forwards to it (each server's forwards would wait on the other's), and nothing here waits on the network.
    /// </summary>
    public void EnterReplicaApply() => _replicaApplies.EnterReadLock();

    public void ExitReplicaApply() => _replicaApplies.ExitReadLock();

    /// <summary>Waits for the replica applies begun before it (after a view is installed: those checked the older view).</summary>
    public void WaitReplicaApplies()
    {
        _replicaApplies.EnterWriteLock();
        _replicaApplies.ExitWriteLock();
    }
}
