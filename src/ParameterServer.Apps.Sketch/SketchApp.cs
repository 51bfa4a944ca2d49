using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Apps.Sketch.Streams;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Sketch;

/// <summary>
/// Counts a stream with a CountMin sketch on the servers (the paper's section 5.3). Each worker reads its share of the
/// items, counts them into a buffer of counter deltas of the sketch's shape, and pushes the buffer after every
/// <see cref="SketchOptions.FlushInserts"/> inserts (or 200 ms): the servers see one push per window, whatever the
/// insert rate. Client resends are deduplicated by the servers, so a flush is counted once through failovers.
/// Rank 0 reports the job: inserts/s, the error bound and the heavy hitters.
/// </summary>
public sealed class SketchApp(SketchOptions options) : IPsApp
{
    private const int Batch = 4096;
    private const int StatsWidth = 6; // inserts, aggregate µs, read µs, wall µs, longest flush µs, last failover µs + 1 (0: none)
    private const int MaxPendingFlushes = 4;
    private static readonly TimeSpan s_flushInterval = TimeSpan.FromMilliseconds(200);

    public string Name => "sketch";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        if (client.Joined)
        {
            throw new ArgumentException("sketch splits its input by rank when the job starts, so a worker cannot join a running sketch job (`pserver sketch query` reads one without joining its ingestion)");
        }
        var shape = options.Shape;
        var tables = await SketchTables.DeclareAsync(client, shape, cancellationToken).ConfigureAwait(false);
        var stats = await client.DeclareTableAsync(new TableSpec("sketch.stats", StatsWidth) { ElementType = ElementType.Int64, DenseSize = (ulong)context.WorkerCount }, cancellationToken).ConfigureAwait(false);
        context.Log.LogInformation("sketch rank {Rank}/{Workers}: width {Width} x depth {Depth} ({Layout}), epsilon {Epsilon}, delta {Delta}{Conservative}",
            context.Rank, context.WorkerCount, shape.Width, shape.Depth, shape.Layout.ToString().ToLowerInvariant(), options.Epsilon, options.Delta, options.Conservative ? ", conservative update" : "");
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);

        var ingest = new Ingestion(options, shape, tables, client, context);
        await ingest.RunAsync(cancellationToken).ConfigureAwait(false);
        await client.WaitAsync(stats.PushRangeInt64((ulong)context.Rank, ingest.Stats), cancellationToken).ConfigureAwait(false);
        JobTraffic.Publish(client);
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        if (context.Rank == 0)
        {
            await ReportAsync(context, shape, tables, stats, cancellationToken).ConfigureAwait(false);
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }

    private async Task ReportAsync(WorkerContext context, SketchShape shape, SketchTables tables, PsTable statsTable, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var sketch = await tables.PullAsync(client, shape, cancellationToken).ConfigureAwait(false);
        var top = await tables.TopAsync(options.Top, sketch, cancellationToken).ConfigureAwait(false);
        var stats = new long[context.WorkerCount * StatsWidth];
        await client.WaitAsync(statsTable.PullRangeInt64(0, stats), cancellationToken).ConfigureAwait(false);
        long inserts = 0, wallMicros = 0, longestFlushMicros = 0, readMicros = 0, aggregateMicros = 0, workerMicros = 0, failoverMicros = 0;
        double perWorker = 0;
        for (int r = 0; r < context.WorkerCount; r++)
        {
            var row = stats.AsSpan(r * StatsWidth, StatsWidth);
            inserts += row[0];
            aggregateMicros += row[1];
            readMicros += row[2];
            workerMicros += row[3];
            wallMicros = Math.Max(wallMicros, row[3]);
            longestFlushMicros = Math.Max(longestFlushMicros, row[4]);
            failoverMicros = Math.Max(failoverMicros, row[5]);
            perWorker += row[1] > 0 ? row[0] / (row[1] / 1e6) : 0;
        }
        long total = sketch.Total();
        if (options.SketchOut is { } path)
        {
            SketchFile.Write(path, sketch);
            context.Log.LogInformation("Wrote the sketch ({Width} x {Depth}) to {Path}", shape.Width, shape.Depth, path);
        }
        var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
        var summary = new Dictionary<string, object?>
        {
            ["app"] = "sketch",
            ["items"] = options.Synthetic ? options.Items : null,
            ["inserts"] = inserts,
            ["counted"] = total,
            ["inserts_per_sec"] = Math.Round(inserts / Math.Max(wallMicros / 1e6, 1e-9)),
            ["aggregate_inserts_per_sec_per_worker"] = Math.Round(perWorker / Math.Max(1, context.WorkerCount)),
            ["longest_flush_ms"] = Math.Round(longestFlushMicros / 1e3, 1),
            // A server lost mid-stream: from the moment a worker's flush was left without its server to the first answer
            // from the keys' new owner (the paper's recovery time); null when no worker failed over.
            ["failover_ms"] = failoverMicros > 0 ? Math.Round((failoverMicros - 1) / 1e3, 1) : null,
            // What the workers' time went to: reading (or drawing) items, counting them into the buffer; the rest is flushing.
            ["read_fraction"] = Math.Round(readMicros / Math.Max(1.0, workerMicros), 3),
            ["aggregate_fraction"] = Math.Round(aggregateMicros / Math.Max(1.0, workerMicros), 3),
            ["epsilon"] = options.Epsilon,
            ["delta"] = options.Delta,
            ["width"] = shape.Width,
            ["depth"] = shape.Depth,
            ["layout"] = shape.Layout.ToString().ToLowerInvariant(),
            ["conservative"] = options.Conservative,
            ["error_bound"] = Math.Round(options.Epsilon * total, 1),
            ["workers"] = context.WorkerCount,
            ["servers"] = client.ServerCount,
        };
        var line = new Dictionary<string, object?>();
        JobTraffic.AddTo(line, workerTraffic, serverTraffic);
        summary["bytes_sent"] = line.GetValueOrDefault("bytes_sent", 0L);
        summary["top"] = top.Select(h => new Dictionary<string, object> { ["item"] = h.Item, ["estimate"] = h.Estimate }).ToList();
        if (context.Json)
        {
            context.Output.WriteLine(JsonSerializer.Serialize(summary));
            return;
        }
        context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"counted {inserts:N0} inserts in a {shape.Width:N0} x {shape.Depth} sketch ({shape.Layout.ToString().ToLowerInvariant()}{(options.Conservative ? ", conservative" : "")}) at {summary["inserts_per_sec"]:N0} inserts/s ({summary["aggregate_inserts_per_sec_per_worker"]:N0}/s per worker into its buffer); estimates exceed true counts by at most {summary["error_bound"]:N0} (epsilon x N) with probability {1 - options.Delta:0.####}"));
        context.Output.WriteLine($"top {top.Count}:");
        foreach (var hitter in top)
        {
            context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {hitter.Estimate,14:N0}  {hitter.Item}"));
        }
    }

    /// <summary>One worker's ingestion: read, count into the buffer, flush.</summary>
    private sealed class Ingestion(SketchOptions options, SketchShape shape, SketchTables tables, PsClient client, WorkerContext context)
    {
        private readonly CountMinSketch _buffer = new(shape);
        private readonly HeavyHitters _candidates = new();
        private readonly Queue<Task> _pending = new();
        private readonly List<ulong> _candidateKeys = new();
        private readonly List<long> _candidateRows = new();
        private long _aggregateTicks, _readTicks, _longestFlushTicks, _inserts;

        /// <summary>[inserts, aggregate µs, read µs, wall µs, longest flush µs, last failover µs + 1 or 0].</summary>
        public long[] Stats { get; } = new long[StatsWidth];

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            long start = Stopwatch.GetTimestamp(), lastFlush = start, sinceFlush = 0;
            var hashes = new ulong[Batch];
            var ids = new long[Batch];
            using var text = options.Synthetic ? null : TextItems.Open(options.Files, context.Rank, context.WorkerCount, Batch);
            var zipf = options.Synthetic ? new ZipfStream(options.Items, options.Zipf, ((ulong)options.Seed * 0x9E3779B97F4A7C15UL) + (ulong)context.Rank) : null;
            var idHashes = options.Synthetic ? IdHashes(options.Items) : null;
            long share = options.Synthetic ? (options.Inserts / context.WorkerCount) + (context.Rank < options.Inserts % context.WorkerCount ? 1 : 0) : long.MaxValue;
            var digits = new byte[20];
            while (_inserts < share)
            {
                long readStart = Stopwatch.GetTimestamp();
                int n;
                if (zipf is not null)
                {
                    n = (int)Math.Min(Batch, share - _inserts);
                    Draw(zipf, idHashes, ids.AsSpan(0, n), hashes.AsSpan(0, n));
                }
                else
                {
                    n = text!.Read(hashes);
                    if (n == 0)
                    {
                        break;
                    }
                }
                long aggregateStart = Stopwatch.GetTimestamp();
                _readTicks += aggregateStart - readStart;
                Count(hashes.AsSpan(0, n), text, ids, digits);
                long aggregateEnd = Stopwatch.GetTimestamp();
                _aggregateTicks += aggregateEnd - aggregateStart;
                _inserts += n;
                sinceFlush += n;
                if (sinceFlush >= options.FlushInserts || Stopwatch.GetElapsedTime(lastFlush, aggregateEnd) >= s_flushInterval)
                {
                    await FlushAsync(cancellationToken).ConfigureAwait(false);
                    sinceFlush = 0;
                    lastFlush = Stopwatch.GetTimestamp();
                    if (context.Rank == 0 && options.Synthetic)
                    {
                        context.Progress.Report(new JobProgress("ingesting", (double)_inserts / share));
                    }
                }
            }
            await FlushAsync(cancellationToken).ConfigureAwait(false);
            while (_pending.Count > 0)
            {
                await CompleteOldestAsync(cancellationToken).ConfigureAwait(false);
            }
            Stats[0] = _inserts;
            Stats[1] = Micros(_aggregateTicks);
            Stats[2] = Micros(_readTicks);
            Stats[3] = Micros(Stopwatch.GetTimestamp() - start);
            Stats[4] = Micros(Interlocked.Read(ref _longestFlushTicks));
            Stats[5] = client.Diagnostics.LastFailover is { } failover ? (long)(failover.TotalMilliseconds * 1e3) + 1 : 0;
        }

        // The loops over a batch live outside the async method: its locals would be fields of the state machine there.
        private static void Draw(ZipfStream zipf, ulong[]? idHashes, Span<long> ids, Span<ulong> hashes)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                long id = zipf.Next();
                ids[i] = id;
                hashes[i] = idHashes is not null ? idHashes[id - 1] : Items.HashOfId((ulong)id);
            }
        }

        private void Count(ReadOnlySpan<ulong> hashes, TextItems? text, long[] ids, byte[] digits)
        {
            var buffer = _buffer;
            var candidates = _candidates;
            long threshold = candidates.Threshold;
            bool conservative = options.Conservative;
            for (int i = 0; i < hashes.Length; i++)
            {
                ulong hash = hashes[i];
                long estimate = conservative ? buffer.AddConservative(hash) : buffer.Add(hash);
                if (estimate >= threshold && !candidates.Offered(hash))
                {
                    candidates.Offer(hash, estimate, text is not null ? text.Token(i) : Name(ids[i], digits));
                    threshold = candidates.Threshold;
                }
            }
        }

        private static ReadOnlySpan<byte> Name(long id, byte[] digits)
        {
            id.TryFormat(digits, out int n, provider: CultureInfo.InvariantCulture);
            return digits.AsSpan(0, n);
        }

        // Hashing a decimal id costs more than the insert: keep them for up to 16M items.
        private static ulong[]? IdHashes(long items)
        {
            if (items > 1 << 24)
            {
                return null;
            }
            var hashes = new ulong[items];
            for (long id = 1; id <= items; id++)
            {
                hashes[id - 1] = Items.HashOfId((ulong)id);
            }
            return hashes;
        }

        private async Task FlushAsync(CancellationToken cancellationToken)
        {
            while (_pending.Count >= MaxPendingFlushes)
            {
                await CompleteOldestAsync(cancellationToken).ConfigureAwait(false);
            }
            // The push copies the buffer before it returns, so the buffer starts the next window at once.
            long issued = Stopwatch.GetTimestamp();
            _pending.Enqueue(TrackAsync(tables.Counters.PushRangeInt64(0, _buffer.Counters), issued, cancellationToken));
            _buffer.Clear();
            if (_candidates.TakeWindow(_candidateKeys, _candidateRows) > 0)
            {
                var keys = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_candidateKeys);
                var rows = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_candidateRows);
                _pending.Enqueue(TrackAsync(tables.Candidates.PushInt64(keys, rows), issued, cancellationToken));
            }
        }

        // Times a flush from its push to its acknowledgement (through a failover, the time until the keys' new owner
        // applied it). One task per flush, a few per second.
        private async Task TrackAsync(long timestamp, long issued, CancellationToken cancellationToken)
        {
            await client.WaitAsync(timestamp, cancellationToken).ConfigureAwait(false);
            long took = Stopwatch.GetTimestamp() - issued;
            long seen;
            while (took > (seen = Interlocked.Read(ref _longestFlushTicks)) && Interlocked.CompareExchange(ref _longestFlushTicks, took, seen) != seen)
            {
            }
        }

        private Task CompleteOldestAsync(CancellationToken cancellationToken) => _pending.Dequeue().WaitAsync(cancellationToken);

        private static long Micros(long ticks) => (long)(ticks * 1e6 / Stopwatch.Frequency);
    }
}
