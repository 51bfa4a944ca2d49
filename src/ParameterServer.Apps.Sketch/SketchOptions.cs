using ParameterServer.Apps.Sketch.Sketching;

namespace ParameterServer.Apps.Sketch;

/// <summary>One sketch ingestion, as every worker sees it.</summary>
public sealed record SketchOptions
{
    /// <summary>Text files whose whitespace-separated tokens are the items (.gz and .bz2 accepted); empty with <see cref="Synthetic"/>.</summary>
    public IReadOnlyList<string> Files { get; init; } = [];

    /// <summary>Zipf-distributed ids instead of files.</summary>
    public bool Synthetic { get; init; }

    /// <summary>Synthetic: distinct items (ids 1..N).</summary>
    public long Items { get; init; } = 1_000_000;

    /// <summary>Synthetic: the Zipf exponent s (P(k) ~ k^-s).</summary>
    public double Zipf { get; init; } = 1.1;

    /// <summary>Synthetic: inserts over all workers.</summary>
    public long Inserts { get; init; } = 100_000_000;

    public double Epsilon { get; init; } = 1e-4;

    public double Delta { get; init; } = 0.01;

    public SketchLayout Layout { get; init; } = SketchLayout.Rows;

    /// <summary>Conservative update in each worker's buffer (tighter estimates, still overestimates).</summary>
    public bool Conservative { get; init; }

    /// <summary>Heavy hitters to report.</summary>
    public int Top { get; init; } = 10;

    /// <summary>A worker pushes its buffered counter deltas after this many inserts (or 200 ms).</summary>
    public int FlushInserts { get; init; } = 1 << 20;

    /// <summary>Write the job's final sketch here (rank 0).</summary>
    public string? SketchOut { get; init; }

    public int Seed { get; init; } = 1;

    public SketchShape Shape => SketchShape.FromBounds(Epsilon, Delta, Layout);

    public void Validate()
    {
        _ = Shape; // epsilon, delta and the layout's depth
        if (Synthetic == (Files.Count > 0))
        {
            throw new ArgumentException(Synthetic ? "sketch takes --data FILE,... or --synthetic, not both" : "sketch needs --data FILE[,FILE...] (text, .gz or .bz2) or --synthetic [--items N --zipf S --inserts M]");
        }
        if (Items < 1 || Inserts < 1 || !(Zipf > 0))
        {
            throw new ArgumentException($"--items and --inserts must be at least 1 and --zipf positive, got {Items}, {Inserts} and {Zipf}");
        }
        if (Top < 1 || FlushInserts < 1024)
        {
            throw new ArgumentException($"--top must be at least 1 and --flush-every at least 1024, got {Top} and {FlushInserts}");
        }
    }
}
