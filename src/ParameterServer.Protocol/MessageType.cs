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

    // Data plane (worker <-> server).
    Push = 16,
    Pull = 17,
    PushPull = 18,
    ServerStats = 19,
    /// <summary>Read every row a server holds for a table, a few blocks per request (Round = first block).</summary>
    Scan = 20,

    // Server <-> server.
    /// <summary>
    /// A primary forwards an applied push to a replica of its keys (chain replication). Payload as a push; Aux = the
    /// worker's node id, Round = the push's dedup id (see <see cref="FrameFlags.Resend"/>). Answered once applied.
    /// </summary>
    Replicate = 24,

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
    /// <summary>Reserved for value compression (not yet produced).</summary>
    Compressed = 1 << 1,
    /// <summary>Reserved for key caching: the key section was sent before and is referenced by a signature.</summary>
    KeysCached = 1 << 2,
    /// <summary>
    /// A worker sends a push again after a failover. Round then holds the request id the push was first sent with, and a
    /// server that has applied that (sender, id) already, as primary or as replica, only acknowledges it.
    /// </summary>
    Resend = 1 << 3,

    Known = KeyRange | Resend,
}

/// <summary>Element type of a table's values. Sizes come from <see cref="ElementTypes.SizeOf"/>; the transport never looks inside.</summary>
internal enum WireElementType : byte
{
    Float32 = 1,
    Float64 = 2,
    Int32 = 3,
    Int64 = 4,
}

internal static class ElementTypes
{
    public static int SizeOf(WireElementType type) => type switch
    {
        WireElementType.Float32 or WireElementType.Int32 => 4,
        WireElementType.Float64 or WireElementType.Int64 => 8,
        _ => 0,
    };
}
