namespace ParameterServer.Extensions;

/// <summary>
/// Server-side update logic for one table. A stored row is
/// [values (width) | optimizer state (<see cref="StateLength"/>(width))], zero-initialised.
/// </summary>
/// <remarks>Implementations must be stateless apart from their configuration; the server calls them concurrently for different rows.</remarks>
public interface IUpdateHandler
{
    /// <summary>Floats of optimizer state kept next to each key's <c>width</c> values (0 for Sum and plain SGD).</summary>
    int StateLength(int width);

    /// <summary>Applies one pushed row (<c>pushed.Length == width</c>) to a stored <c>row</c> (<c>row.Length == width + StateLength(width)</c>).</summary>
    void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width);
}

/// <summary>A handler that can apply a run of consecutive keys' rows in one call.</summary>
public interface IRunUpdateHandler : IUpdateHandler
{
    /// <summary>
    /// Applies <paramref name="count"/> pushed rows (back to back, stride <paramref name="width"/>) to
    /// <paramref name="count"/> stored rows laid out back to back with stride <c>width + StateLength(width)</c>.
    /// Equivalent to calling <see cref="IUpdateHandler.Apply"/> once per row.
    /// </summary>
    void ApplyRun(Span<float> rows, ReadOnlySpan<float> pushed, int width, int count);
}

/// <summary>
/// A stateless handler whose every value is updated from its own pushed value alone, so any contiguous slice of a row
/// can be applied on its own (a large push is then applied piece by piece as it arrives).
/// </summary>
public interface IElementwiseUpdateHandler : IUpdateHandler
{
    /// <summary>Applies <paramref name="pushed"/> to the equally long slice <paramref name="values"/> of one row.</summary>
    void ApplyElements(Span<float> values, ReadOnlySpan<float> pushed);
}
