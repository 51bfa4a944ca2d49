namespace ParameterServer.Client.Diagnostics;

// Room: Diagnostics. The hook benchmarks use to time calls; the call clock (Dispatch) holds the one set.

/// <summary>
/// Watches calls of one <see cref="PsClient"/>: <see cref="OnIssued"/> runs on the calling thread once the call
/// has its timestamp (after any bounded-delay wait), <see cref="OnCompleted"/> on whichever thread completes it.
/// Both must be quick and must not call back into the client.
/// </summary>
public interface ICallObserver
{
    /// <summary>A call got its timestamp (the value its Push/Pull returned).</summary>
    void OnIssued(long timestamp);

    /// <summary>The call with this timestamp completed; <paramref name="error"/> is null on success.</summary>
    void OnCompleted(long timestamp, PsException? error);
}
