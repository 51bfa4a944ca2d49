using ParameterServer.Protocol;

namespace ParameterServer.Core.Cluster;

/// <summary>A declared table as published in the view: the user's <see cref="TableSpec"/> plus the id the scheduler gave it.</summary>
internal sealed record TableInfo(int Id, string Name, int Width, string Handler, UpdateMode Mode, ulong DenseSize, int BlockKeys, int BlockBits, string PullFilter = "none")
{
    public WireElementType ElementType => WireElementType.Float32;

    public bool IsDense => DenseSize > 0;

    /// <summary>Pulls ask servers to filter their answers (<see cref="TableSpec.PullFilter"/>).</summary>
    public bool FiltersPulls => PullFilter != "none";

    /// <summary>Number of blocks: dense tables cut [0, size) into runs of BlockKeys; sparse ones hash into 2^BlockBits.</summary>
    public long BlockCount => IsDense ? (long)((DenseSize + (ulong)BlockKeys - 1) / (ulong)BlockKeys) : 1L << BlockBits;

    /// <summary>The block of a key: contiguous runs for dense tables, the top bits of a bijective mix for sparse ones.</summary>
    public long BlockOf(ulong key) => IsDense ? (long)(key / (ulong)BlockKeys) : (long)(Hashing.Mix64(key) >> (64 - BlockBits));

    /// <summary>Where a block sits on the ring (tables are salted so their blocks land independently).</summary>
    public ulong RingPositionOf(long block) => Hashing.Mix64((ulong)block ^ ((ulong)(uint)Id * 0x9E3779B97F4A7C15UL));

    public static TableInfo From(int id, TableSpec spec) =>
        new(id, spec.Name, spec.Width, spec.Handler, spec.Mode, spec.DenseSize, spec.BlockKeys, spec.BlockBits, NormalizedPullFilter(spec.PullFilter));

    private static string NormalizedPullFilter(string spec) =>
        string.IsNullOrWhiteSpace(spec) || spec.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) ? "none" : spec.Trim();

    public bool SameDefinition(TableSpec spec) =>
        Name == spec.Name && Width == spec.Width && Handler == spec.Handler && Mode == spec.Mode
        && DenseSize == spec.DenseSize && BlockKeys == spec.BlockKeys && BlockBits == spec.BlockBits && PullFilter == NormalizedPullFilter(spec.PullFilter);

    public string Describe() =>
        $"'{Name}' (width {Width}, {(IsDense ? $"dense size {DenseSize}" : "sparse")}, handler {Handler}, {Mode.ToString().ToLowerInvariant()}{(PullFilter == "none" ? "" : $", pull filter {PullFilter}")})";
}
