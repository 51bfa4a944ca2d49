namespace ParameterServer.Protocol;

/// <summary>What a frame carries. Values are part of the wire format: never renumber.</summary>
internal enum MessageType : byte
{
    // Control plane (node <-> scheduler).
    Register = 1,
    View = 2,
    Heartbeat = 3,
    Barrier = 4,
    Shutdown = 5,
    DeclareTable = 6,
    Finish = 7,
    Status = 8,
    /// <summary>Scheduler -> server: write your rows for checkpoint epoch Round into the folder named by the payload (UTF-8).</summary>
    Checkpoint = 9,
    /// <summary>Server -> scheduler: checkpoint epoch Round is written; payload: JSON with the file, or the error.</summary>
    CheckpointDone = 10,
    /// <summary>Scheduler -> server, before its first view: load the checkpoint in the folder named by the payload (UTF-8).</summary>
    Restore = 11,
    /// <summary>Worker -> scheduler: the job's work is this many units (payload: int32); idempotent.</summary>
    DeclareWork = 12,
    /// <summary>Worker -> scheduler: give me a unit. Answer: unit id (or -1 all done, -2 ask again), backup flag, counts.</summary>
    ClaimWork = 13,
    /// <summary>Worker -> scheduler: this unit is done (payload: int32). Answer: 1 if first, 0 if it was done already.</summary>
    CompleteWork = 14,
    /// <summary>Node -> a restarted scheduler: I am node (id, role) of this job; payload: ints [id, role, units held...].</summary>
    Rejoin = 15,
    /// <summary>Server -> scheduler: every block that gained a copy in view Round has been copied and applied there (numbered after the data plane: see Drain).</summary>
    RefillDone = 28,

    // Data plane (worker <-> server).
    Push = 16,
    Pull = 17,
    PushPull = 18,
    ServerStats = 19,
    /// <summary>Read every row a server holds for a table, a few blocks per request (Round = first block).</summary>
    Scan = 20,
    /// <summary>
    /// Run a program of vector operations (<see cref="VectorProgramCodec"/>) on tables of one placement group, over
    /// every block this server holds (so every copy changes alike); answered with each Dot's share of this server's
    /// primary blocks.
    /// </summary>
    VectorOps = 21,

    // Server <-> server.
    /// <summary>
    /// A primary forwards an applied push to a replica of its keys (chain replication). Payload as a push; Aux = the
    /// worker's node id, Round = the worker's request id. With <see cref="FrameFlags.Resend"/>, Timestamp = the
    /// request id of the frame the push replaces and ViewNumber = the view that frame was cut by. Answered once applied.
    /// </summary>
    Replicate = 24,
    /// <summary>
    /// A primary copies one block of a table to a server that has just joined the block's chain. Payload: keys, then
    /// whole stored rows (RowWidth = values + handler state). Round = block index; Timestamp = 1 on the first frame of
    /// the block (the replica clears the block first). Not answered: frames on one connection arrive in order.
    /// </summary>
    Refill = 25,
    /// <summary>
    /// A primary streams a large push to a replica while the push still arrives (cut-through): the parts of one
    /// Replicate frame (its header first), in order, all with the same RequestId. Timestamp = the Replicate frame's
    /// length, Round = this part's offset in it, Aux = <see cref="ReplicatePartKind"/>. The replica assembles them and
    /// applies the frame, and answers it, only on the commit part, which the primary sends once it applied the push
    /// itself; an abort discards it. Parts of different streams may interleave on a connection.
    /// </summary>
    ReplicatePart = 23,

    // Control plane again (numbers above the data plane's so that no two types share one).
    /// <summary>
    /// Observer -> scheduler: drain node payload[0] (a server's ranges move away, then it exits; a worker hands its
    /// remaining work back and exits). Scheduler -> worker: you are drained: take no more work units.
    /// </summary>
    Drain = 26,
    /// <summary>Observer -> scheduler: even out the servers' shares of the ring by moving virtual nodes (payload: int32 1 = dry run).</summary>
    Rebalance = 27,

    // The answer to any request: same request id, ErrorCode 0 and a payload, or an error code and a UTF-8 message.
    Response = 32,
}

/// <summary>Bit flags in the header. Receivers reject flags they do not understand.</summary>
[Flags]
internal enum FrameFlags : ushort
{
    None = 0,
    /// <summary>The key section is [u64 first key][u64 key count] instead of a list: a contiguous range.</summary>
    KeyRange = 1 << 0,
    /// <summary>The value section is encoded (Core.Codecs.ValueCodec): zero suppression, quantization, general compression.</summary>
    Compressed = 1 << 1,
    /// <summary>The key section is a 16-byte <see cref="KeySignature"/> of a key list this sender sent before with <see cref="StoreKeys"/>.</summary>
    KeysCached = 1 << 2,
    /// <summary>
    /// A worker sends a push again after a failover, cut by a newer view. Round holds the request id of the frame it
    /// replaces and Aux the view that frame was cut by: a server that held a key under that view and has recorded that
    /// frame (as primary or replica) skips the key, so the push is applied once on every copy.
    /// </summary>
    Resend = 1 << 3,
    /// <summary>The key section is an explicit key list the receiver should keep under its signature (key caching).</summary>
    StoreKeys = 1 << 4,
    /// <summary>
    /// A sync-mode marker without keys or answer: the sender's pushes of rounds below Round on this table were cut by
    /// views without this server (it joined since), so they never come here and its rounds need not wait for them.
    /// </summary>
    RoundsFrom = 1 << 5,
    /// <summary>
    /// A filtered push: the key section names the unfiltered key list (so its signature repeats with the batch), then
    /// [u32 rows present][u32 0][bitmap, ceil(keys / 64) u64] says which rows the values are for.
    /// </summary>
    Masked = 1 << 6,
    /// <summary>The key list is packed as varint deltas (<see cref="KeyPacking"/>).</summary>
    PackedKeys = 1 << 7,
    /// <summary>
    /// On a pull: filter the answer by the table's pull filter against what this connection was sent before (Aux 1: send
    /// every row this time, a refresh). On its answer: the values follow a mask section ([u32 rows present][u32 0]
    /// [bitmap]); a row left out is the one this connection was last sent for that key.
    /// </summary>
    FilterAnswer = 1 << 8,

    /// <summary>Flags that a receiver must decode before it can read the frame as a plain data frame.</summary>
    Encoded = Compressed | KeysCached | StoreKeys | Masked | PackedKeys,

    Known = KeyRange | Resend | RoundsFrom | Encoded | FilterAnswer,
}

/// <summary>Element type of a table's values; the transport never looks inside. Rows travel as 4-byte words (<see cref="ElementTypes.WordBytes"/>).</summary>
internal enum WireElementType : byte
{
    Float32 = 1,
    Float64 = 2,
    Int32 = 3,
    Int64 = 4,
}

internal static class ElementTypes
{
    /// <summary>Frames and stores count rows in 4-byte words: a float32 or int32 takes one, an int64 two.</summary>
    public const int WordBytes = 4;

    public static bool IsKnown(WireElementType type) => type is WireElementType.Float32 or WireElementType.Float64 or WireElementType.Int32 or WireElementType.Int64;
}

/// <summary>What a <see cref="MessageType.ReplicatePart"/> frame does (its Aux).</summary>
internal enum ReplicatePartKind : uint
{
    /// <summary>The next bytes of the frame.</summary>
    Data = 0,
    /// <summary>The last bytes (maybe none): apply the frame and answer it.</summary>
    Commit = 1,
    /// <summary>Discard the frame: the push will not be applied, or comes again whole.</summary>
    Abort = 2,
}
