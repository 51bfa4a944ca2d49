using ParameterServer.Client.Routing;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. The data model of a call in flight: an operation and its per-server slices (pooled by CallClock and
// SliceLedger). Plain data: the components that own them (ledger, clock, dispatcher, failover) keep their invariants.

/// <summary>One Push / Pull / PushPull call: its timestamp, its per-server slices and where pulled values go. Pooled.</summary>
internal sealed class Operation
{
    public long Timestamp;
    public long TableSeq;
    /// <summary>Stopwatch timestamp when issued, for the call-duration metric (0: no collector was listening).</summary>
    public long IssuedAt;
    /// <summary>The call's span while a trace listener listens (<see cref="PsTracing"/>); null otherwise.</summary>
    public System.Diagnostics.Activity? Span;
    public TableState Table = null!;
    public MessageType Kind;
    public int PendingSlices;
    public Memory<float> Destination;
    public PsException? Error;
    public readonly List<Slice> Slices = new();
    public readonly List<long> After = new();

    public void Reset()
    {
        Table = null!;
        PendingSlices = 0;
        Destination = default;
        Error = null;
        Span = null;
        Slices.Clear();
        After.Clear();
    }
}

/// <summary>
/// The part of an operation sent to one server: an encoded frame (kept until answered) and, for pulls whose keys
/// are not one contiguous run, the positions to scatter the answer to. Pooled. A large contiguous value section of
/// a call dispatched while its caller waits is not copied into the frame but sent from the caller's values
/// (<see cref="ValueStart"/> >= 0); a resend of such a slice would have to copy them first.
/// </summary>
internal sealed class Slice
{
    public Operation Op = null!;
    /// <summary>Index of the server in the view the slice was cut by (<see cref="ViewNumber"/>).</summary>
    public int ServerSlot;
    /// <summary>The connection the slice goes out on; after a failover, the new owner's.</summary>
    public ServerLink Link = null!;
    public uint ViewNumber;
    /// <summary>
    /// For a resend: the earlier frame with these keys that a server may have applied (its request id and the view it
    /// was cut by). Servers skip the keys they held under that view and have that frame recorded for.
    /// </summary>
    public ulong PredecessorId;
    public uint PredecessorView;
    /// <summary>Sent again after a failover (for the failover time).</summary>
    public bool Resent;
    /// <summary>Waiting for a resend because its server was lost (it may have been applied), not because it was refused.</summary>
    public bool LostWithServer;
    /// <summary>When a slice waiting for a failover may be sent again (Environment.TickCount64); 0: when a newer view arrives.</summary>
    public long RetryAt;
    public ulong RequestId;
    public byte[] Frame = [];
    public int FrameLength;
    /// <summary>
    /// The frame as it goes on the wire when the table caches keys or encodes values (the first send only; resends use
    /// <see cref="Frame"/>, which always holds plain keys and the values as the servers will see them). Pooled.
    /// </summary>
    public byte[]? Wire;
    public int WireLength;
    /// <summary>The signature <see cref="Wire"/> named its keys by, if any: forgotten when the server answers KeyCacheMiss.</summary>
    public KeySignature? WireSignature;
    /// <summary>Header and key section bytes: where the values start in <see cref="Frame"/>.</summary>
    public int HeadLength;
    /// <summary>Index in the caller's values of this slice's value section when it is not in the frame yet; -1 when the frame is complete.</summary>
    public int ValueStart = -1;
    public int ValueCount;
    /// <summary>Positions in the caller's key list, or null when the slice is the run [Start, Start + Count).</summary>
    public int[]? Positions;
    public int Start;
    public int Count;
    public long Deadline;
    /// <summary>Stopwatch timestamp when it was (last) entered in flight: for answer times and slow-call reports.</summary>
    public long SentAt;
    /// <summary>Logged as slow already (once per slice).</summary>
    public bool ReportedSlow;
    /// <summary><see cref="SendIdle"/>, <see cref="SendInProgress"/>, or <see cref="SendReleased"/> (completed while sending: the sender recycles it).</summary>
    public int SendState;

    public const int SendIdle = 0;
    public const int SendInProgress = 1;
    public const int SendReleased = 2;

    /// <summary>Reads the header of the plain frame (<see cref="Frame"/>); false when it cannot be read back.</summary>
    public bool TryReadHeader(out FrameHeader header) => FrameHeader.TryRead(Frame, int.MaxValue, out header, out _) == HeaderStatus.Ok;

    /// <summary>Rewrites the plain frame's header: fields change through <see cref="FrameHeader"/>, never at byte offsets here.</summary>
    public void WriteHeader(in FrameHeader header) => header.Write(Frame);
}
