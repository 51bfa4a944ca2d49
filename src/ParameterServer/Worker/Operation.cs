using ParameterServer.Protocol;

namespace ParameterServer.Worker;

/// <summary>One Push / Pull / PushPull call: its timestamp, its per-server slices and where pulled values go. Pooled.</summary>
internal sealed class Operation
{
    public long Timestamp;
    public long TableSeq;
    public PsTable Table = null!;
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
        Slices.Clear();
        After.Clear();
    }
}

/// <summary>
/// The part of an operation sent to one server: an encoded frame (kept until answered, so it can be resent)
/// and, for pulls whose keys are not one contiguous run, the positions to scatter the answer to. Pooled.
/// </summary>
internal sealed class Slice
{
    public Operation Op = null!;
    public int ServerSlot;
    public ulong RequestId;
    public byte[] Frame = [];
    public int FrameLength;
    /// <summary>Positions in the caller's key list, or null when the slice is the run [Start, Start + Count).</summary>
    public int[]? Positions;
    public int Start;
    public int Count;
    public long Deadline;
}
