namespace ParameterServer.Client.JobControl;

// Room: JobControl. Owns why the worker stopped taking calls (the first reason wins) and the token long-running apps
// watch. Every room may read it; only the host enters it (then wakes the rooms that have waiters).

/// <summary>The worker's end: set once by the scheduler ending the job, losing the scheduler, or the app closing the client.</summary>
internal sealed class ClientShutdown
{
    private readonly CancellationTokenSource _cancel = new();
    private string? _reason;

    /// <summary>Why the worker is shutting down, or null while it runs.</summary>
    public string? Reason => Volatile.Read(ref _reason);

    /// <summary>Cancelled when the job ends (<see cref="Cancel"/>).</summary>
    public CancellationToken Token => _cancel.Token;

    public bool IsCancellationRequested => _cancel.IsCancellationRequested;

    /// <summary>Records the reason (unless one is recorded already). The caller wakes the waiters, then calls <see cref="Cancel"/>.</summary>
    public void Enter(string reason) => Interlocked.CompareExchange(ref _reason, reason, null);

    public void Cancel()
    {
        try
        {
            _cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public void ThrowIfShutDown(int nodeId)
    {
        if (Reason is { } reason)
        {
            throw new PsException(PsErrorCode.ShuttingDown, $"worker {nodeId}: {reason}");
        }
    }
}
