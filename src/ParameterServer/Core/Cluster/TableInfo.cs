using ParameterServer.Protocol;

namespace ParameterServer.Core.Cluster;

/// <summary>A declared table as published in the view: the user's <see cref="TableSpec"/> plus the id the scheduler gave it.</summary>
/// <remarks>
/// One definition, one codec: the view, the DeclareTable message (<see cref="WriteDefinition"/>), the scheduler's
/// metadata and the checkpoint manifest (JSON of this record) all carry a table as this record.
/// </remarks>
internal sealed record TableInfo(int Id, string Name, int Width, string Handler, UpdateMode Mode, ulong DenseSize, int BlockKeys, int BlockBits, string PullFilter = "none",
    ElementType Element = ElementType.Float32, string Group = "")
{
    /// <summary>The element type as frames carry it.</summary>
    public WireElementType ElementType => (WireElementType)Element;

    public bool IsDense => DenseSize > 0;

    /// <summary>4-byte words per row, as frames and stores count them: Width, or twice that for 8-byte elements.</summary>
    public int Words => Element is ParameterServer.ElementType.Int64 or ParameterServer.ElementType.Float64 ? Width * 2 : Width;

    /// <summary>Pulls ask servers to filter their answers (<see cref="TableSpec.PullFilter"/>).</summary>
    public bool FiltersPulls => PullFilter != "none";

    /// <summary>Number of blocks: dense tables cut [0, size) into runs of BlockKeys; sparse ones hash into 2^BlockBits.</summary>
    public long BlockCount => IsDense ? (long)((DenseSize + (ulong)BlockKeys - 1) / (ulong)BlockKeys) : 1L << BlockBits;

    /// <summary>The block of a key: contiguous runs for dense tables, the top bits of a bijective mix for sparse ones.</summary>
    public long BlockOf(ulong key) => IsDense ? (long)(key / (ulong)BlockKeys) : (long)(Hashing.Mix64(key) >> (64 - BlockBits));

    /// <summary>
    /// Where a block sits on the ring. Tables are salted so their blocks land independently, except the tables of one
    /// placement group (<see cref="TableSpec.PlacementGroup"/>), which share a salt: their block i lands together.
    /// </summary>
    public ulong RingPositionOf(long block) => Hashing.Mix64((ulong)block ^ (Group.Length == 0 ? (ulong)(uint)Id * 0x9E3779B97F4A7C15UL : GroupSalt(Group)));

    // FNV-1a over the name's characters, with the top bit set so that no group shares a salt with a table id.
    private static ulong GroupSalt(string group)
    {
        ulong hash = Hashing.FoldSeed;
        foreach (char c in group)
        {
            hash = Hashing.Fold(hash, c);
        }
        return hash | (1UL << 63);
    }

    public static TableInfo From(int id, TableSpec spec) =>
        new(id, spec.Name, spec.Width, spec.Handler, spec.Mode, spec.DenseSize, spec.BlockKeys, spec.BlockBits, NormalizedPullFilter(spec.PullFilter), spec.ElementType, spec.PlacementGroup ?? "");

    /// <summary>The definition as a worker declares it (no id: the scheduler gives one).</summary>
    public TableSpec ToSpec() => new(Name, Width)
    {
        Handler = Handler,
        Mode = Mode,
        DenseSize = DenseSize,
        BlockKeys = BlockKeys,
        BlockBits = BlockBits,
        PullFilter = PullFilter,
        ElementType = Element,
        PlacementGroup = Group.Length == 0 ? null : Group,
    };

    /// <summary>Writes the definition (everything but the id) in the one binary form views and declarations use.</summary>
    public void WriteDefinition(PayloadWriter w)
    {
        w.WriteString(Name);
        w.WriteInt32(Width);
        w.WriteString(Handler);
        w.WriteByte((byte)Mode);
        w.WriteUInt64(DenseSize);
        w.WriteInt32(BlockKeys);
        w.WriteInt32(BlockBits);
        w.WriteString(PullFilter);
        w.WriteByte((byte)Element);
        w.WriteString(Group);
    }

    /// <summary>Reads what <see cref="WriteDefinition"/> wrote, as table <paramref name="id"/>.</summary>
    public static TableInfo ReadDefinition(ref PayloadReader r, int id)
    {
        string name = r.ReadString(1024);
        int width = r.ReadInt32();
        string handler = r.ReadString(4096);
        var mode = (UpdateMode)r.ReadByte();
        ulong denseSize = r.ReadUInt64();
        int blockKeys = r.ReadInt32();
        int blockBits = r.ReadInt32();
        string pullFilter = r.ReadString(4096);
        var element = (ElementType)r.ReadByte();
        string group = r.ReadString(1024);
        return new TableInfo(id, name, width, handler, mode, denseSize, blockKeys, blockBits, pullFilter, element, group);
    }

    private static string NormalizedPullFilter(string spec) =>
        string.IsNullOrWhiteSpace(spec) || spec.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) ? "none" : spec.Trim();

    public bool SameDefinition(TableSpec spec) =>
        Name == spec.Name && Width == spec.Width && Handler == spec.Handler && Mode == spec.Mode
        && DenseSize == spec.DenseSize && BlockKeys == spec.BlockKeys && BlockBits == spec.BlockBits && PullFilter == NormalizedPullFilter(spec.PullFilter)
        && Element == spec.ElementType && Group == (spec.PlacementGroup ?? "");

    public string Describe() =>
        $"'{Name}' (width {Width}{(Element == ParameterServer.ElementType.Float32 ? "" : $" {Element.ToString().ToLowerInvariant()}")}, {(IsDense ? $"dense size {DenseSize}" : "sparse")}, handler {Handler}, {Mode.ToString().ToLowerInvariant()}{(PullFilter == "none" ? "" : $", pull filter {PullFilter}")}{(Group.Length == 0 ? "" : $", placement group {Group}")})";
}
