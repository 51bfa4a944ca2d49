using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

/// <summary>
/// What the data path asks of failover when a slice cannot be answered where it was sent. Implemented by
/// Failover.FailoverCoordinator, which depends on Dispatch; Dispatch knows only this interface (the arrow stays one way).
/// </summary>
internal interface ISliceRecovery
{
    /// <summary>
    /// Keeps a slice whose server was lost to send it again to the keys' new owner, when its table can fail over.
    /// <paramref name="mayBeApplied"/>: the server may have applied the frame. False: the caller fails the slice.
    /// </summary>
    bool TryFailOver(Slice slice, bool mayBeApplied);

    /// <summary>The same for a slice a server refused as not the owner of its keys (WrongOwner): the views disagree.</summary>
    bool TryRetryRefused(Slice slice, in FrameHeader answer);

    /// <summary>A resent slice was answered (ends a failover's timing).</summary>
    void OnResentAnswered();

    /// <summary>Sends the kept slices that a newer view (or their retry time) allows; fails those past their deadline.</summary>
    void ResendDue();
}
