using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Server.Store;

namespace ParameterServer.Server;

/// <summary>
/// A table held in this process: the same store and update handler a server uses, called directly (no network).
/// For single-process baselines and tests of a handler.
/// </summary>
public sealed class LocalTable
{
    private readonly TableStore _store;

    /// <summary>A table shaped by <paramref name="spec"/>, updated by the handler its <see cref="TableSpec.Handler"/> names.</summary>
    public LocalTable(TableSpec spec)
    {
        var info = TableInfo.From(1, spec);
        _store = new TableStore(info, UpdateHandlers.ForTable(info, UpdateHandlers.Parse));
    }

    /// <summary>Values per key.</summary>
    public int Width => _store.Width;

    /// <summary>Copies the rows of <paramref name="keys"/> into <paramref name="destination"/> (zeros for keys never pushed).</summary>
    public void Read(ReadOnlySpan<ulong> keys, Span<float> destination) => _store.Read(keys, destination);

    /// <summary>Applies a push: the update handler folds <paramref name="values"/> into the rows of <paramref name="keys"/>.</summary>
    public void Apply(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> values) => _store.Apply(keys, values);
}
