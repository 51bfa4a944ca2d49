using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Client;

namespace ParameterServer.Apps.Sketch;

/// <summary>
/// The tables of a sketch job, declared alike by its workers and by `sketch query`: the shape (one int64 row of
/// [layout, width, depth], max: every worker writes the same), the counters (int64, summed; one key per row of the
/// flat layout, so the servers split the sketch by blocks of columns) and the heavy-hitter candidates (int64, max,
/// keyed by item hash).
/// </summary>
public sealed record SketchTables(PsTable Shape, PsTable Counters, PsTable Candidates)
{
    public const string ShapeTable = "sketch.shape";
    public const string CountersTable = "sketch.counters";
    public const string CandidatesTable = "sketch.candidates";

    private static TableSpec ShapeSpec => new(ShapeTable, 3) { ElementType = ElementType.Int64, Handler = "max", DenseSize = 1, BlockKeys = 1 };

    /// <summary>Declares the tables of <paramref name="shape"/> and records the shape (workers).</summary>
    public static async Task<SketchTables> DeclareAsync(PsClient client, SketchShape shape, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(shape);
        var shapeTable = await client.DeclareTableAsync(ShapeSpec, cancellationToken).ConfigureAwait(false);
        await client.WaitAsync(shapeTable.PushRangeInt64(0, [(long)shape.Layout + 1, shape.Width, shape.Depth]), cancellationToken).ConfigureAwait(false);
        return await DeclareDataAsync(client, shapeTable, shape, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the shape a running job recorded and declares its tables (`sketch query`).</summary>
    public static async Task<(SketchTables Tables, SketchShape Shape)> OpenAsync(PsClient client, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        var shapeTable = await client.DeclareTableAsync(ShapeSpec, cancellationToken).ConfigureAwait(false);
        var row = new long[3];
        await client.WaitAsync(shapeTable.PullRangeInt64(0, row), cancellationToken).ConfigureAwait(false);
        if (row[0] == 0)
        {
            throw new PsException(PsErrorCode.InvalidArgument, "the job has not recorded a sketch shape yet: is it a sketch job (--app sketch), and has it started?");
        }
        var shape = new SketchShape((int)row[1], (int)row[2], (SketchLayout)(row[0] - 1));
        return (await DeclareDataAsync(client, shapeTable, shape, cancellationToken).ConfigureAwait(false), shape);
    }

    private static async Task<SketchTables> DeclareDataAsync(PsClient client, PsTable shapeTable, SketchShape shape, CancellationToken cancellationToken)
    {
        var counters = await client.DeclareTableAsync(new TableSpec(CountersTable, shape.RowCounters)
        {
            ElementType = ElementType.Int64,
            DenseSize = (ulong)shape.Keys,
            BlockKeys = Math.Max(1, (shape.Keys + 63) / 64), // about 64 blocks to place
            Compression = "zero", // rows a flush did not touch are not sent
        }, cancellationToken).ConfigureAwait(false);
        var candidates = await client.DeclareTableAsync(new TableSpec(CandidatesTable, HeavyHitters.RowWords) { ElementType = ElementType.Int64, Handler = "max" }, cancellationToken).ConfigureAwait(false);
        return new SketchTables(shapeTable, counters, candidates);
    }

    /// <summary>The job's sketch as it stands (every counter pulled).</summary>
    public async Task<CountMinSketch> PullAsync(PsClient client, SketchShape shape, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        var sketch = new CountMinSketch(shape);
        await client.WaitAsync(Counters.PullRangeInt64(0, sketch.Counters), cancellationToken).ConfigureAwait(false);
        return sketch;
    }

    /// <summary>The top <paramref name="k"/> heavy hitters: every candidate, ranked by <paramref name="sketch"/>.</summary>
    public async Task<List<HeavyHitter>> TopAsync(int k, CountMinSketch sketch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(sketch);
        var (keys, words) = await Candidates.ReadAllAsync(cancellationToken).ConfigureAwait(false);
        var rows = System.Runtime.InteropServices.MemoryMarshal.Cast<float, long>(words.AsSpan());
        return HeavyHitters.Top(k, keys, rows, sketch.Shape, sketch.Counters);
    }
}
