namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. A data structure (the call clock's and each table's window of timestamps); owns only its ring.

/// <summary>
/// Tracks which of a dense sequence of ids (timestamps) have completed, when completions arrive out of order.
/// <see cref="OldestIncomplete"/> is what bounded delay waits on. A ring of flags: no allocation in steady state.
/// Not thread safe: the client holds its lock.
/// </summary>
internal sealed class CompletionWindow
{
    private bool[] _done = new bool[64];
    private long _oldestIncomplete;
    private long _next;

    public long Next => _next;

    public long OldestIncomplete => _oldestIncomplete;

    public long InFlight => _next - _oldestIncomplete;

    public long Take()
    {
        if (_next - _oldestIncomplete >= _done.Length)
        {
            var larger = new bool[_done.Length * 2];
            for (long id = _oldestIncomplete; id < _next; id++)
            {
                larger[id & (larger.Length - 1)] = _done[id & (_done.Length - 1)];
            }
            _done = larger;
        }
        _done[_next & (_done.Length - 1)] = false;
        return _next++;
    }

    public void Complete(long id)
    {
        if (id < _oldestIncomplete || id >= _next)
        {
            return;
        }
        _done[id & (_done.Length - 1)] = true;
        while (_oldestIncomplete < _next && _done[_oldestIncomplete & (_done.Length - 1)])
        {
            _oldestIncomplete++;
        }
    }

    public bool IsDone(long id) => id < _oldestIncomplete || (id < _next && _done[id & (_done.Length - 1)]);
}
