using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.Sketch;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Apps.Sketch.Streams;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench sketch`: CountMin insert rates in one thread (both layouts, plain and conservative update), then the
/// same stream through 1 server x 1 worker, in the same run; with --data, the accuracy of a job's sketch of those files
/// against exact counts computed here.
/// </summary>
public static class BenchSketch
{
    /// <summary>--hitters.</summary>
    public static readonly Option<int> Hitters = PsOptions.Create("--hitters", 100, "With --data: heavy hitters whose precision and recall are measured (k)");

    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        bool json = p.GetValue(PsOptions.Json);
        var options = SketchAppDefinition.OptionsFrom(p, synthetic: true);
        if (!options.Synthetic)
        {
            return await AccuracyAsync(p, options, json, ct);
        }
        long inserts = options.Inserts;
        var shape = options.Shape;
        Console.Error.WriteLine($"bench sketch: {inserts:N0} Zipf({options.Zipf}) inserts over {options.Items:N0} items, epsilon {options.Epsilon}, delta {options.Delta}...");
        // The stream, hashed once (the single-thread figures count inserts, not the drawing of ids).
        var stream = new ZipfStream(options.Items, options.Zipf, 42);
        var idHashes = new ulong[options.Items];
        for (long id = 1; id <= options.Items; id++)
        {
            idHashes[id - 1] = Items.HashOfId((ulong)id);
        }
        var hashes = new ulong[Math.Min(inserts, 1 << 24)];
        for (int i = 0; i < hashes.Length; i++)
        {
            hashes[i] = idHashes[stream.Next() - 1];
        }
        var results = new Dictionary<string, object>
        {
            ["bench"] = "sketch",
            ["inserts"] = inserts,
            ["width"] = shape.Width,
            ["depth"] = shape.Depth,
        };
        foreach (var layout in new[] { SketchLayout.Rows, SketchLayout.Blocked })
        {
            foreach (bool conservative in new[] { false, true })
            {
                var sketch = new CountMinSketch(new SketchShape(shape.Width, shape.Depth, layout));
                double rate = SingleThread(sketch, hashes, inserts, conservative);
                string name = $"single_thread_{layout.ToString().ToLowerInvariant()}{(conservative ? "_conservative" : "")}";
                results[name] = Math.Round(rate);
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  one thread, {layout.ToString().ToLowerInvariant(),-7} layout{(conservative ? ", conservative" : "")}: {rate,14:N0} inserts/s ({1e9 / rate:0.0} ns each)"));
            }
        }

        // What a worker does, in one thread: draw the ids from the stream, then count them (the job's layout).
        {
            var sketch = new CountMinSketch(shape);
            var drawn = new ZipfStream(options.Items, options.Zipf, 43);
            var batch = new ulong[4096]; // in batches, as the worker draws them
            long start = Stopwatch.GetTimestamp();
            for (long done = 0; done < inserts; done += batch.Length)
            {
                int n = (int)Math.Min(batch.Length, inserts - done);
                for (int i = 0; i < n; i++)
                {
                    batch[i] = idHashes[drawn.Next() - 1];
                }
                for (int i = 0; i < n; i++)
                {
                    sketch.Add(batch[i]);
                }
            }
            double rate = inserts / Stopwatch.GetElapsedTime(start).TotalSeconds;
            results["single_thread_drawn"] = Math.Round(rate);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  one thread drawing the ids and counting them ({shape.Layout.ToString().ToLowerInvariant()}): {rate,14:N0} inserts/s"));
        }

        Console.Error.WriteLine("bench sketch: the same stream on 1 server x 1 worker...");
        List<string> args = ["--json", "--app", "sketch", .. SketchAppDefinition.Arguments(options)];
        var run = await LocalJob.RunAsync(BenchTraining.QuietJob(1, 1, args), ct);
        if (run.Failure is not null)
        {
            throw new PsException(PsErrorCode.Internal, $"the 1x1 sketch job failed: {run.Failure}");
        }
        var job = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Last(e => e.TryGetProperty("inserts_per_sec", out _));
        double cluster = job.GetProperty("inserts_per_sec").GetDouble();
        double aggregate = job.GetProperty("aggregate_inserts_per_sec_per_worker").GetDouble();
        string layoutName = shape.Layout.ToString().ToLowerInvariant();
        double single = Convert.ToDouble(results[$"single_thread_{layoutName}"], CultureInfo.InvariantCulture);
        double drawnRate = Convert.ToDouble(results["single_thread_drawn"], CultureInfo.InvariantCulture);
        results["worker_aggregate_inserts_per_sec"] = Math.Round(aggregate);
        results["cluster_inserts_per_sec"] = Math.Round(cluster);
        results["ratio"] = Math.Round(cluster / single, 3);
        results["ratio_to_drawn"] = Math.Round(cluster / drawnRate, 3);
        results["bytes_sent"] = job.GetProperty("bytes_sent").GetInt64();
        results["worker_read_fraction"] = job.GetProperty("read_fraction").GetDouble();
        results["worker_aggregate_fraction"] = job.GetProperty("aggregate_fraction").GetDouble();
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(results));
            return ExitCodes.Ok;
        }
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"""
            CountMin {shape.Width:N0} x {shape.Depth}, {inserts:N0} Zipf({options.Zipf}) inserts over {options.Items:N0} items:
              one thread, rows layout:                 {results["single_thread_rows"],14:N0} inserts/s
              one thread, blocked layout:              {results["single_thread_blocked"],14:N0} inserts/s
              one thread, rows, conservative update:   {results["single_thread_rows_conservative"],14:N0} inserts/s
              one thread, blocked, conservative:       {results["single_thread_blocked_conservative"],14:N0} inserts/s
              one thread drawing the ids and counting: {drawnRate,14:N0} inserts/s ({layoutName}, what a worker does)
              1 worker counting into its buffer:       {aggregate,14:N0} inserts/s (candidates kept; drawing not timed)
              1 server x 1 worker, applied:            {cluster,14:N0} inserts/s  ({cluster / single:0.00} x one thread counting, {cluster / drawnRate:0.00} x one thread drawing and counting)
              the worker's time: drawing ids {results["worker_read_fraction"]:P0}, counting into its buffer {results["worker_aggregate_fraction"]:P0}, the rest flushing (copying the buffer for the push, clearing it)
            """));
        return ExitCodes.Ok;
    }

    private static double SingleThread(CountMinSketch sketch, ulong[] hashes, long inserts, bool conservative)
    {
        // Warm up (JIT, caches), then time the whole stream.
        for (int i = 0; i < Math.Min(hashes.Length, 1 << 20); i++)
        {
            sketch.Add(hashes[i]);
        }
        sketch.Clear();
        long start = Stopwatch.GetTimestamp();
        long done = 0;
        while (done < inserts)
        {
            int n = (int)Math.Min(hashes.Length, inserts - done);
            if (conservative)
            {
                for (int i = 0; i < n; i++)
                {
                    sketch.AddConservative(hashes[i]);
                }
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    sketch.Add(hashes[i]);
                }
            }
            done += n;
        }
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (sketch.Total() != inserts && sketch.Shape.Layout == SketchLayout.Rows && !conservative)
        {
            throw new InvalidOperationException($"the sketch counted {sketch.Total()} of {inserts} inserts");
        }
        return inserts / seconds;
    }

    /// <summary>
    /// A 2 x 2 job counts the files; exact counts come from reading them here. Reports the fraction of distinct items
    /// whose overestimate is within epsilon x N (the bound promises at least 1 - delta), the largest and mean
    /// overestimate, and the precision and recall of the job's top k against the exact top k.
    /// </summary>
    private static async Task<int> AccuracyAsync(ParseResult p, SketchOptions options, bool json, CancellationToken ct)
    {
        int k = p.GetValue(Hitters);
        string sketchPath = Path.Combine(Directory.CreateTempSubdirectory("pserver-bench-sketch-").FullName, "job.sketch");
        Console.Error.WriteLine($"bench sketch: counting {string.Join(", ", options.Files)} on 2 servers x 2 workers...");
        List<string> args = ["--json", "--app", "sketch", .. SketchAppDefinition.Arguments(options with { Top = k, SketchOut = sketchPath })];
        var run = await LocalJob.RunAsync(BenchTraining.QuietJob(2, 2, args), ct);
        if (run.Failure is not null)
        {
            throw new PsException(PsErrorCode.Internal, $"the sketch job failed: {run.Failure}");
        }
        var job = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Last(e => e.TryGetProperty("top", out _));
        var sketch = SketchFile.Read(sketchPath);
        Console.Error.WriteLine("bench sketch: exact counts...");
        var exact = new Dictionary<string, long>(StringComparer.Ordinal);
        var hashOf = new Dictionary<string, ulong>(StringComparer.Ordinal);
        using (var text = TextItems.Open(options.Files, 0, 1, 4096))
        {
            var hashes = new ulong[4096];
            int n;
            while ((n = text.Read(hashes)) > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    string item = System.Text.Encoding.UTF8.GetString(text.Token(i));
                    System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(exact, item, out _)++;
                    hashOf[item] = hashes[i];
                }
            }
        }
        long total = exact.Values.Sum();
        double bound = options.Epsilon * total;
        long within = 0, maxOver = 0;
        double sumOver = 0;
        foreach (var (item, count) in exact)
        {
            long over = sketch.Estimate(hashOf[item]) - count;
            if (over < 0)
            {
                throw new InvalidOperationException($"the sketch underestimates '{item}': {count + over} < {count}");
            }
            within += over <= bound ? 1 : 0;
            maxOver = Math.Max(maxOver, over);
            sumOver += over;
        }
        var trueTop = exact.OrderByDescending(e => e.Value).ThenBy(e => e.Key, StringComparer.Ordinal).Take(k).Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
        var jobTop = job.GetProperty("top").EnumerateArray().Select(e => e.GetProperty("item").GetString()!).ToList();
        int hits = jobTop.Count(trueTop.Contains);
        var results = new Dictionary<string, object>
        {
            ["bench"] = "sketch-accuracy",
            ["inserts"] = total,
            ["counted"] = sketch.Total(),
            ["distinct_items"] = exact.Count,
            ["epsilon"] = options.Epsilon,
            ["delta"] = options.Delta,
            ["layout"] = options.Layout.ToString().ToLowerInvariant(),
            ["conservative"] = options.Conservative,
            ["error_bound"] = Math.Round(bound, 1),
            ["within_bound_fraction"] = Math.Round((double)within / exact.Count, 6),
            ["max_overestimate"] = maxOver,
            ["mean_overestimate"] = Math.Round(sumOver / exact.Count, 3),
            ["k"] = k,
            ["precision_at_k"] = Math.Round((double)hits / Math.Max(1, jobTop.Count), 4),
            ["recall_at_k"] = Math.Round((double)hits / Math.Max(1, trueTop.Count), 4),
        };
        Console.Out.WriteLine(json ? JsonSerializer.Serialize(results) : string.Create(CultureInfo.InvariantCulture,
            $"""
            {total:N0} inserts of {exact.Count:N0} distinct items ({options.Layout.ToString().ToLowerInvariant()} layout{(options.Conservative ? ", conservative" : "")}, epsilon {options.Epsilon}, delta {options.Delta}):
              within epsilon x N = {bound:N1}: {results["within_bound_fraction"]:P4} of the items (the bound promises at least {1 - options.Delta:P2})
              overestimate: max {maxOver:N0}, mean {results["mean_overestimate"]}
              top {k}: precision {results["precision_at_k"]}, recall {results["recall_at_k"]}
            """));
        return ExitCodes.Ok;
    }
}
