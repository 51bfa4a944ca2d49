using ParameterServer.Core.Codecs;

namespace ParameterServer;

/// <summary>How pushes meet the stored values on the servers.</summary>
public enum UpdateMode : byte
{
    /// <summary>Apply each push as it arrives (the paper's eventual / bounded-delay training).</summary>
    Async = 0,

    /// <summary>Sum the pushes of all live workers for a round, apply once, then acknowledge them all.</summary>
    Sync = 1,
}

/// <summary>What each value of a table's rows is. <see cref="Float32"/>, <see cref="Int32"/> and <see cref="Int64"/> tables can be created today.</summary>
public enum ElementType : byte
{
    Float32 = 1,
    Float64 = 2,
    Int32 = 3,
    Int64 = 4,
}

/// <summary>
/// A table of parameters: every key holds a row of <see cref="Width"/> values of <see cref="ElementType"/> (float32 by default).
/// Tables are declared by workers (the same name and definition from every worker), created on all servers.
/// </summary>
public sealed record TableSpec
{
    public TableSpec(string name, int width = 1)
    {
        CheckName(name);
        if (width < 1 || width > 1 << 24)
        {
            throw new ArgumentOutOfRangeException(nameof(width), width, "row width must be in [1, 16777216]");
        }
        Name = name;
        Width = width;
    }

    public string Name { get; private init; }

    /// <summary>The same definition under another name (tables cut alike, e.g. a solver's vectors).</summary>
    public TableSpec WithName(string name)
    {
        CheckName(name);
        return this with { Name = name };
    }

    private static void CheckName(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 128)
        {
            throw new ArgumentException($"table name must be 1..128 characters, got '{name}'", nameof(name));
        }
    }

    /// <summary>Values per key: 1 for a weight vector, d for an embedding row.</summary>
    public int Width { get; }

    /// <summary>Server-side update: <c>sum</c> (default), <c>sgd</c>, <c>adagrad</c>, <c>momentum</c>, <c>ftrl</c>, <c>adam</c> with
    /// parameters such as <c>ftrl:alpha=0.1,l1=1</c>, or the name of a handler registered on the servers.</summary>
    public string Handler { get; init; } = "sum";

    public UpdateMode Mode { get; init; } = UpdateMode.Async;

    /// <summary>
    /// What the rows hold. Defaults to <see cref="ParameterServer.ElementType.Float32"/>. <see cref="ParameterServer.ElementType.Int32"/>
    /// and <see cref="ParameterServer.ElementType.Int64"/> tables hold counts (handler sum, or max, which keeps the larger; lossless compression only) and take
    /// <see cref="Client.PsTable.PushInt32"/> / <see cref="Client.PsTable.PullInt32"/> or their Int64 forms.
    /// </summary>
    public ElementType ElementType { get; init; } = ElementType.Float32;

    /// <summary>0 for a sparse table (any uint64 key); otherwise keys are [0, DenseSize) and stored as flat arrays.</summary>
    public ulong DenseSize { get; init; }

    /// <summary>Dense tables: consecutive keys per block (the unit of placement). Defaults to 1024.</summary>
    public int BlockKeys { get; init; } = 1024;

    /// <summary>Sparse tables: 2^BlockBits blocks over the hashed key space. Defaults to 12.</summary>
    public int BlockBits { get; init; } = 12;

    /// <summary>
    /// Key caching (this worker's calls): a key list sent to a server before is sent again as a 16-byte signature
    /// that the server resolves. Lossless. Pays off when the same key lists recur (minibatches over epochs).
    /// </summary>
    public bool KeyCaching { get; init; }

    /// <summary>
    /// How this worker's pushes and the answers to its pulls encode values: <c>none</c> (default), or stages joined by
    /// '+': <c>zero</c> (rows of zeros are not sent; lossless), <c>lz</c> (fast general compression; lossless),
    /// <c>fp16</c> or <c>bf16</c> (half-width floats), <c>topk[:FRACTION]</c> or <c>1bit</c> (pushes only, with error
    /// feedback: what a push leaves out is added to the next push of the same key). For example <c>zero+fp16</c>.
    /// </summary>
    public string Compression { get; init; } = "none";

    /// <summary>
    /// Which rows of pull answers servers send (<see cref="Extensions.IPullFilter"/>): <c>none</c> (default, every row), <c>sigmod:T</c>
    /// (only rows that changed by more than T since this worker was last sent them; its copy of the others stays within T),
    /// or the name of a filter registered on the servers (<see cref="Server.ServerOptions.AddPullFilter"/>).
    /// </summary>
    public string PullFilter { get; init; } = "none";

    /// <summary>
    /// Dense tables that name the same placement group and have the same size and block size keep each block on the
    /// same servers, so that server-side vector operations (<see cref="Client.PsClient.RunVectorOpsAsync"/>) can combine
    /// them row by row without moving a value. Null: the table is placed on its own.
    /// </summary>
    public string? PlacementGroup { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad field: a compression stage, a built-in pull filter, the block sizes, an empty handler.</summary>
    public void Validate()
    {
        CodecSpec.Parse(Compression); // throws naming the bad stage
        if (Extensions.PullFilters.IsBuiltIn(PullFilter))
        {
            Extensions.PullFilters.Parse(PullFilter); // throws saying what is accepted
        }
        if (ElementType is not (ElementType.Float32 or ElementType.Int32 or ElementType.Int64))
        {
            throw new ArgumentException($"table '{Name}': element type {ElementType} is not supported yet; tables hold float32, int32 or int64 values", nameof(ElementType));
        }
        if (ElementType is ElementType.Int32 or ElementType.Int64)
        {
            var codec = CodecSpec.Parse(Compression);
            if (Handler is not ("sum" or "max") || codec.IsLossy || PullFilter.Trim() is not ("" or "none"))
            {
                throw new ArgumentException($"{ElementType.ToString().ToLowerInvariant()} table '{Name}' takes handler sum or max (it has {Handler}), lossless compression only (zero, lz; it has {Compression}) and no pull filter (it has {PullFilter})", nameof(ElementType));
            }
            if (Handler == "max" && Mode == UpdateMode.Sync)
            {
                throw new ArgumentException($"table '{Name}': handler max applies each push as it comes (async); sync rounds add the workers' pushes", nameof(Handler));
            }
        }
        if (BlockKeys < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(BlockKeys), BlockKeys, "BlockKeys must be positive");
        }
        if (BlockBits is < 1 or > 24)
        {
            throw new ArgumentOutOfRangeException(nameof(BlockBits), BlockBits, "BlockBits must be in [1, 24]");
        }
        if (PlacementGroup is not null && (DenseSize == 0 || ElementType != ElementType.Float32 || PlacementGroup.Length is 0 or > 256))
        {
            throw new ArgumentException($"table '{Name}': a placement group (for vector operations) needs a dense float32 table (DenseSize > 0) and a name of 1 to 256 characters", nameof(PlacementGroup));
        }
        if (string.IsNullOrWhiteSpace(Handler))
        {
            throw new ArgumentException("Handler must name an update handler such as 'sum'", nameof(Handler));
        }
    }
}
