using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Apps.Sketch.Streams;
using ParameterServer.Client;

namespace ParameterServer.Apps.Sketch;

/// <summary>
/// `pserver sketch query`: estimates and heavy hitters of a running sketch job. It joins the job as a worker for the
/// length of one pull (it reads, never pushes) and reports itself finished, so the job's result is unchanged.
/// </summary>
public static class SketchQuery
{
    /// <summary>Queries the job at <paramref name="scheduler"/>; writes the answer to <paramref name="output"/>. Returns the exit code.</summary>
    public static async Task<int> RunAsync(string scheduler, IReadOnlyList<string> items, int top, bool json, TextWriter output, ILoggerFactory loggers, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(output);
        if (items.Count == 0 && top < 1)
        {
            throw new ArgumentException("sketch query needs --items A,B,... or --top K");
        }
        // Look before joining: a job without a sketch is told so, and gets no tables declared by a query.
        var status = await ClusterAdmin.StatusAsync(scheduler, timeout, cancellationToken).ConfigureAwait(false);
        using (var document = JsonDocument.Parse(status.ToJson()))
        {
            var names = document.RootElement.TryGetProperty("tables", out var tables) ? tables.EnumerateArray().Select(t => t.GetProperty("name").GetString()).ToList() : [];
            if (!names.Contains(SketchTables.CountersTable))
            {
                throw new PsException(PsErrorCode.InvalidArgument,
                    $"the job at {scheduler} has no sketch (its tables: {(names.Count == 0 ? "none yet" : string.Join(", ", names))}); start one with `pserver sketch ingest` or `--app sketch`");
            }
        }
        await using var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = scheduler, Join = true, RequestTimeout = timeout }, loggers, cancellationToken).ConfigureAwait(false);
        var (sketchTables, shape) = await SketchTables.OpenAsync(client, cancellationToken).ConfigureAwait(false);
        var sketch = await sketchTables.PullAsync(client, shape, cancellationToken).ConfigureAwait(false);
        long total = sketch.Total();
        var estimates = items.Select(item => new HeavyHitter(item, sketch.Estimate(Items.Hash(item)))).ToList();
        var hitters = top > 0 ? await sketchTables.TopAsync(top, sketch, cancellationToken).ConfigureAwait(false) : [];
        await client.FinishAsync(cancellationToken).ConfigureAwait(false);

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["query"] = "sketch",
                ["counted"] = total,
                ["width"] = shape.Width,
                ["depth"] = shape.Depth,
                ["items"] = estimates.Select(e => new Dictionary<string, object> { ["item"] = e.Item, ["estimate"] = e.Estimate }).ToList(),
                ["top"] = hitters.Select(e => new Dictionary<string, object> { ["item"] = e.Item, ["estimate"] = e.Estimate }).ToList(),
            }));
            return 0;
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{total:N0} inserts counted so far in a {shape.Width:N0} x {shape.Depth} sketch; estimates (never below the true counts):"));
        foreach (var e in estimates)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {e.Estimate,14:N0}  {e.Item}"));
        }
        if (hitters.Count > 0)
        {
            output.WriteLine($"top {hitters.Count}:");
            foreach (var e in hitters)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {e.Estimate,14:N0}  {e.Item}"));
            }
        }
        return 0;
    }
}
