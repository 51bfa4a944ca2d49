using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using ParameterServer.Client.JobControl;
using ParameterServer.Client.Routing;
using ParameterServer.Core.Codecs;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch, the receiving side of the data path (on the links' receive threads): matches answers to slices,
// scatters pulled rows into the caller's memory (plain, encoded, filtered, or received straight into it), sends a
// slice again on the same link when the server lacks a cached key list or a row, and hands lost or refused slices to
// failover. Owns the counts of those two resends. Uses: the ledger, the dispatcher (to complete), the clock (batched
// wake-ups), ISliceRecovery, the table modes.

/// <summary>Takes in the answers and closes of a worker's links to its servers.</summary>
internal sealed class ResponseHandler(int nodeId, WorkerOptions options, ILogger log, ClientShutdown shutdown, CallClock clock, SliceLedger ledger,
    Dispatcher dispatcher, PromptTables prompt) : ILinkEvents
{
    private long _keyCacheMisses;
    private long _pullRefreshes;

    /// <summary>Answers KeyCacheMiss to this worker's signatures (each followed by a resend with the keys).</summary>
    public long KeyCacheMisses => Interlocked.Read(ref _keyCacheMisses);

    /// <summary>Filtered pull answers that left out a row this worker did not hold (each followed by a refresh).</summary>
    public long PullRefreshes => Interlocked.Read(ref _pullRefreshes);

    private ISliceRecovery Recovery => dispatcher.Recovery;

    public bool AnswersPromptly(int tableId) => prompt.AnswersPromptly(tableId);

    public void OnResponse(ServerLink link, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type != MessageType.Response)
        {
            return;
        }
        CallClock.BeginReceiveBatch();
        var slice = ledger.Take(header.RequestId);
        if (slice is null)
        {
            if ((header.Flags & FrameFlags.FilterAnswer) != 0)
            {
                link.ForgetPulledRows(header.TableId); // its rows are not taken in: what the server remembers is unknown now
            }
            return; // timed out or failed already
        }
        link.CountAnswer(slice.SentAt);
        var op = slice.Op;
        PsException? error = null;
        if (header.Error == ErrorCode.WrongOwner && Recovery.TryRetryRefused(slice, header))
        {
            return; // the views disagree: sent again when they agree
        }
        if (header.Error == ErrorCode.KeyCacheMiss && slice.WireSignature is { } signature)
        {
            // The server does not hold the key list (evicted, or a new connection): send the plain frame, keys and all.
            link.KeyCache.Forget(signature);
            slice.WireSignature = null;
            Interlocked.Increment(ref _keyCacheMisses);
            if (ResendPlain(link, slice))
            {
                return;
            }
        }
        if (header.Error != ErrorCode.None)
        {
            error = new PsException((PsErrorCode)header.Error, $"{link.Server.Describe()} refused {op.Kind.ToString().ToLowerInvariant()} on table '{op.Table.Name}': {Encoding.UTF8.GetString(payload)}");
        }
        else if (op.Kind != MessageType.Push)
        {
            int width = op.Table.Width;
            if ((header.Flags & FrameFlags.FilterAnswer) != 0)
            {
                error = FilteredPullScatter.Scatter(link, slice, header, payload, width, options.PullFilterBytes, out bool lacking);
                if (lacking && ResendRefresh(link, slice))
                {
                    return;
                }
            }
            else if ((header.Flags & FrameFlags.Compressed) != 0 && header.KeyCount == slice.Count)
            {
                error = ScatterEncoded(link, slice, payload, width);
            }
            else if (header.KeyCount != slice.Count || payload.Length != slice.Count * width * sizeof(float))
            {
                error = new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} answered {header.KeyCount} rows in {payload.Length} bytes to a pull of {slice.Count} rows of width {width}");
            }
            else
            {
                KeySlicer.Scatter(slice, MemoryMarshal.Cast<byte, float>(payload), op.Destination.Span, width);
            }
        }
        dispatcher.CompleteSlice(slice, error);
    }

    /// <summary>Sends a slice's plain frame again on the same link (after KeyCacheMiss); false when it could not be sent.</summary>
    private bool ResendPlain(ServerLink link, Slice slice)
    {
        ledger.Retrack(slice);
        try
        {
            if (prompt.AnswersPromptly(slice.Op.Table.Info.Id))
            {
                link.Connection.ExpectAnswer();
            }
            link.Connection.SendFrame(slice.Frame.AsSpan(0, slice.FrameLength));
            return true;
        }
        catch (TransportException)
        {
            return ledger.Take(slice.RequestId) is null; // the close handler has taken it over; else fail it below
        }
    }

    /// <summary>Asks again for every row of a filtered pull (Aux 1): an answer left out a row this side does not hold.</summary>
    private bool ResendRefresh(ServerLink link, Slice slice)
    {
        Interlocked.Increment(ref _pullRefreshes);
        if (slice.TryReadHeader(out var header))
        {
            header.Aux = 1;
            slice.WriteHeader(header);
        }
        slice.WireSignature = null;
        return ResendPlain(link, slice);
    }

    /// <summary>Decodes an encoded pull answer and scatters it; returns the error if it is malformed.</summary>
    private static PsException? ScatterEncoded(ServerLink link, Slice slice, ReadOnlySpan<byte> payload, int width)
    {
        var rows = ArrayPool<float>.Shared.Rent(Math.Max(1, slice.Count * width));
        try
        {
            ValueCodec.Decode(payload, width, rows.AsSpan(0, slice.Count * width));
            KeySlicer.Scatter(slice, rows.AsSpan(0, slice.Count * width), slice.Op.Destination.Span, width);
            return null;
        }
        catch (ProtocolException ex)
        {
            return new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} sent an answer that does not decode: {ex.Message}");
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
        }
    }

    /// <summary>
    /// A large pull answer whose rows go to one contiguous run of the caller's destination is received straight
    /// into it (no copy through the receive buffer). The slice leaves the in-flight table now, so no timeout can
    /// complete it while its rows are arriving.
    /// </summary>
    public bool TryBeginDirect(ServerLink link, in FrameHeader header, out Span<byte> target)
    {
        target = default;
        if (header.Type != MessageType.Response || header.Error != ErrorCode.None || (header.Flags & (FrameFlags.Compressed | FrameFlags.FilterAnswer)) != 0)
        {
            return false;
        }
        if (!ledger.TryTakeDirect(header, out var slice))
        {
            return false;
        }
        link.CountAnswer(slice.SentAt);
        int width = slice.Op.Table.Width;
        link.DirectCall = slice;
        target = MemoryMarshal.AsBytes(slice.Op.Destination.Span.Slice(slice.Start * width, slice.Count * width));
        return true;
    }

    public void EndDirect(ServerLink link, bool received)
    {
        var slice = (Slice)link.DirectCall!;
        link.DirectCall = null;
        if (!received && Recovery.TryFailOver(slice, mayBeApplied: true))
        {
            return;
        }
        dispatcher.CompleteSlice(slice, received ? null : new PsException(PsErrorCode.ConnectionLost, $"{link.Server.Describe()} closed the connection while answering call {slice.Op.Timestamp}"));
    }

    /// <summary>Wakes the callers waiting on calls completed during the batch that just ended, once.</summary>
    public void OnBatchEnd() => clock.EndReceiveBatch();

    /// <summary>A link closed: its side calls fail, its slices in flight fail over or fail.</summary>
    public void OnLinkClosed(ServerLink link, string reason)
    {
        link.FailCalls(reason);
        var lost = ledger.TakeAllOn(link);
        if (shutdown.Reason is null)
        {
            log.LogWarningLinkLost(nodeId, link.Server.Describe(), reason);
        }
        foreach (var slice in lost)
        {
            if (!Recovery.TryFailOver(slice, mayBeApplied: true))
            {
                dispatcher.CompleteSlice(slice, new PsException(PsErrorCode.ConnectionLost, $"{link.Server.Describe()} closed the connection while call {slice.Op.Timestamp} was outstanding: {reason}"));
            }
        }
        if (lost.Count > 0)
        {
            Recovery.ResendDue();
        }
    }
}
