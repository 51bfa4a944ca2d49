using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Apps.Lda.Data;
using ParameterServer.Apps.Lda.Sampling;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Lda;

/// <summary>
/// LDA with the word-topic counts on the servers (the paper's section 5.2): int32 tables of word-topic counts (one row
/// of K per word) and topic totals (one hot row); each worker owns every W-th document and its tokens' topics, pulls the
/// counts, samples a sweep against its copy (LightLDA's O(1) sampler), and pushes the count changes.
/// <para>With <c>--consistency sequential</c> iterations are bulk-synchronous: every worker's changes are in before
/// anyone pulls for the next sweep, so the counts sum to the number of tokens at every iteration boundary. With
/// <c>bounded:TAU</c> (the default) there is no barrier: a worker starts sweep i once every live worker has pushed
/// sweep i-1-TAU, so it samples against counts that miss at most TAU sweeps of the others (stale synchronous
/// parallel, the paper's bounded delay across workers); <c>eventual</c> never waits. Rank 0 reports an iteration once
/// every worker has finished it.</para>
/// </summary>
public sealed class LdaApp(LdaOptions options) : IPsApp
{
    private const int MetricsWidth = 4; // document log-likelihood, tokens, seconds, workers (who finished the iteration)

    // A worker waiting on the others' progress (bounded delay) gives up when none of them finishes an iteration this long.
    private static readonly TimeSpan s_progressDeadline = TimeSpan.FromMinutes(5);

    public string Name => "lda";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        if (client.Joined)
        {
            throw new ArgumentException("lda splits the documents by rank when the job starts, so a worker cannot join a running lda job; start the job with more --workers");
        }
        var corpus = BagOfWords.Read(options.Data, options.Format, options.Vocabulary);
        Corpus train = corpus;
        Corpus? test = null;
        if (options.Test is { } testPath)
        {
            test = BagOfWords.Read(testPath, options.Format, options.Vocabulary);
        }
        else if (options.HoldOut > 0)
        {
            (train, test) = corpus.HoldOut(options.HoldOut);
        }
        var mine = train.Shard(context.Rank, context.WorkerCount);
        int k = options.Topics, vocabulary = train.VocabularySize;
        var priors = options.Priors;
        var wordTopic = await client.DeclareTableAsync(new TableSpec("lda.word-topic", k)
        {
            ElementType = ElementType.Int32,
            DenseSize = (ulong)vocabulary,
            BlockKeys = Math.Max(1, (vocabulary + 63) / 64),
            Compression = options.Compression,
        }, cancellationToken).ConfigureAwait(false);
        var totals = await client.DeclareTableAsync(new TableSpec("lda.topic-totals", k) { ElementType = ElementType.Int32, DenseSize = 1, BlockKeys = 1 }, cancellationToken).ConfigureAwait(false);
        var metrics = await client.DeclareTableAsync(new TableSpec("lda.metrics", MetricsWidth) { DenseSize = (ulong)options.Iterations + 1, BlockKeys = 1024 }, cancellationToken).ConfigureAwait(false);
        int staleness = options.Consistency.Tau; // 0: bulk-synchronous
        context.Log.LogInformation("lda rank {Rank}/{Workers}: {Documents} documents, {Tokens} tokens, {Topics} topics, vocabulary {Vocabulary}, {Sampler}, {Consistency}",
            context.Rank, context.WorkerCount, mine.Documents, mine.Tokens, k, vocabulary, options.ExactGibbs ? "O(K) Gibbs" : "LightLDA", options.Consistency);

        // Random initial topics; their counts go to the servers before anyone samples.
        var random = new FastRandom(((ulong)options.Seed * 7919UL) + (ulong)context.Rank);
        var topicOfToken = new int[mine.Tokens];
        var counts = new TopicCounts(vocabulary, k);
        var pulledCounts = new TopicCounts(vocabulary, k); // zeros: the servers have nothing of this worker's yet
        for (int i = 0; i < topicOfToken.Length; i++)
        {
            int t = random.Next(k);
            topicOfToken[i] = t;
            counts.WordTopic[(mine.Words[i] * k) + t]++;
            counts.TopicTotals[t]++;
        }
        var myWords = DistinctWords(mine, vocabulary);
        var changedKeys = new ulong[myWords.Length];
        var changedRows = new int[myWords.Length * k];
        var totalsChange = new int[k];
        await PushChangesAsync(client, wordTopic, totals, counts, pulledCounts, myWords, changedKeys, changedRows, totalsChange, cancellationToken).ConfigureAwait(false);
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);

        ITopicSampler sampler = options.ExactGibbs ? new GibbsSampler(priors, k) : new LightLdaSampler(priors, vocabulary, k);
        var row = new float[MetricsWidth];
        var final = new Dictionary<string, object?>();
        double perplexity = double.NaN, iterationSecondsTotal = 0, pullSeconds = 0, sweepSeconds = 0;
        long tokensTotal = 0;
        long carriedPullTicks = 0; // rank 0: how long its pull after the last iteration ended took (0: the counts it holds are not current)
        var clock = new float[MetricsWidth];
        for (int iteration = 1; iteration <= options.Iterations; iteration++)
        {
            long start = Stopwatch.GetTimestamp();
            if (carriedPullTicks == 0)
            {
                if (staleness > 0)
                {
                    // Not timed, as the barrier of sequential mode is not: tokens/s is the rate of the work itself.
                    await WaitForWorkersAsync(context, metrics, (long)iteration - 1 - staleness, clock, cancellationToken).ConfigureAwait(false);
                    start = Stopwatch.GetTimestamp();
                }
                await PullCountsAsync(client, wordTopic, totals, counts, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                start -= carriedPullTicks; // rank 0 pulled them after the last barrier: that pull is this iteration's
                carriedPullTicks = 0;
            }
            long pulled = Stopwatch.GetTimestamp();
            // The changes are the counts of this worker's words after the sweep less those pulled: comparing rows costs
            // less than tracking each token's move in a third table as it happens (random writes). Pushing slices of
            // the sweep while sampling the next was tried: on a shared machine the sampler lost more to the memory
            // traffic than the overlap saved (bench lda: 0.86-0.87x against 0.92-0.96x).
            counts.WordTopic.CopyTo(pulledCounts.WordTopic, 0);
            counts.TopicTotals.CopyTo(pulledCounts.TopicTotals, 0);
            sampler.Sweep(mine, topicOfToken, counts, null, ref random);
            long swept = Stopwatch.GetTimestamp();
            await PushChangesAsync(client, wordTopic, totals, counts, pulledCounts, myWords, changedKeys, changedRows, totalsChange, cancellationToken).ConfigureAwait(false);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            pullSeconds += Stopwatch.GetElapsedTime(start, pulled).TotalSeconds;
            sweepSeconds += Stopwatch.GetElapsedTime(pulled, swept).TotalSeconds;
            double documentLogLikelihood = Evaluation.DocumentLogLikelihood(mine, topicOfToken, k, priors);
            await client.WaitAsync(metrics.PushRange((ulong)iteration, [(float)documentLogLikelihood, mine.Tokens, (float)seconds, 1]), cancellationToken).ConfigureAwait(false);
            JobTraffic.Publish(client);
            if (staleness == 0)
            {
                await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
            }
            if (context.Rank != 0)
            {
                continue;
            }
            if (staleness > 0)
            {
                await WaitForWorkersAsync(context, metrics, iteration, clock, cancellationToken).ConfigureAwait(false);
            }
            // Every worker's changes of this iteration are in (under bounded delay, some of the next may be too): the
            // counts as they stand now are the ones to report, and the next iteration's.
            long pullStart = Stopwatch.GetTimestamp();
            await PullCountsAsync(client, wordTopic, totals, counts, cancellationToken).ConfigureAwait(false);
            carriedPullTicks = Stopwatch.GetTimestamp() - pullStart;
            await client.WaitAsync(metrics.PullRange((ulong)iteration, row), cancellationToken).ConfigureAwait(false);
            long tokens = (long)row[1];
            double meanSeconds = row[2] / Math.Max(1, row[3]);
            tokensTotal += tokens;
            iterationSecondsTotal += meanSeconds;
            double logLikelihood = (Evaluation.WordLogLikelihood(counts, priors) + row[0]) / Math.Max(1, tokens);
            if (test is not null && (iteration % options.EvalEvery == 0 || iteration == options.Iterations))
            {
                perplexity = Evaluation.Perplexity(counts, test, priors);
            }
            var (workerTraffic, serverTraffic) = await JobTraffic.CollectAsync(client, cancellationToken).ConfigureAwait(false);
            var line = new Dictionary<string, object?>
            {
                ["app"] = "lda",
                ["iteration"] = iteration,
                ["loglik_per_token"] = Math.Round(logLikelihood, 6),
                ["test_perplexity"] = double.IsNaN(perplexity) ? null : Math.Round(perplexity, 2),
                ["tokens_per_sec"] = Math.Round(tokens / Math.Max(meanSeconds, 1e-9)),
                ["counted_tokens"] = counts.TokenCount(),
                ["pull_fraction"] = Math.Round(pullSeconds / Math.Max(1e-9, iterationSecondsTotal), 4),
                ["sweep_fraction"] = Math.Round(sweepSeconds / Math.Max(1e-9, iterationSecondsTotal), 4),
                ["seconds"] = Math.Round(meanSeconds, 4),
            };
            JobTraffic.AddTo(line, workerTraffic, serverTraffic);
            final = line;
            context.Progress.Report(new JobProgress($"iteration {iteration}/{options.Iterations}", (double)iteration / options.Iterations));
            client.Diagnostics.ReportStep((int)Math.Min(int.MaxValue, tokens), -logLikelihood); // a step is an iteration; its loss the negative log-likelihood per token
            if (context.Json)
            {
                context.Output.WriteLine(JsonSerializer.Serialize(line));
            }
            else if (iteration % options.EvalEvery == 0 || iteration == options.Iterations || iteration == 1)
            {
                context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"iteration {iteration}/{options.Iterations}  loglik/token {logLikelihood:0.0000}  {(double.IsNaN(perplexity) ? "" : $"test perplexity {perplexity:0.0}  ")}{line["tokens_per_sec"]:N0} tokens/s"));
            }
            context.Output.Flush();
        }

        if (context.Rank == 0)
        {
            var top = LdaModelFile.TopWords(counts, train.Vocabulary);
            if (!context.Json)
            {
                for (int t = 0; t < top.Count; t++)
                {
                    context.Output.WriteLine($"topic {t,3}: {string.Join(' ', top[t])}");
                }
            }
            if (options.ModelOut is { } path)
            {
                LdaModelFile.Write(path, counts, priors);
                context.Log.LogInformation("Wrote the model ({Words} words x {Topics} topics) to {Path}", vocabulary, k, path);
            }
            var summary = new Dictionary<string, object?>
            {
                ["app"] = "lda",
                ["topics"] = k,
                ["iterations"] = options.Iterations,
                ["loglik_per_token"] = final.GetValueOrDefault("loglik_per_token"),
                ["test_perplexity"] = final.GetValueOrDefault("test_perplexity"),
                ["tokens_per_sec"] = Math.Round(tokensTotal / Math.Max(iterationSecondsTotal, 1e-9)),
                ["bytes_sent"] = final.GetValueOrDefault("bytes_sent", 0L),
                ["bytes_received"] = final.GetValueOrDefault("bytes_received", 0L),
                ["workers"] = context.WorkerCount,
                ["servers"] = client.ServerCount,
                ["sampler"] = options.ExactGibbs ? "gibbs" : "lightlda",
            };
            var (rows, bytes) = await ServerUsageAsync(client, "lda.word-topic", cancellationToken).ConfigureAwait(false);
            summary["server_bytes_per_row"] = rows > 0 ? Math.Round((double)bytes / rows, 1) : null;
            summary["server_rows"] = rows;
            if (options.TrueTopics is { } truthPath)
            {
                summary["topic_recovery"] = Math.Round(LdaGenerator.Recovery(LdaGenerator.ReadTopics(truthPath), counts), 4);
            }
            if (context.Json)
            {
                summary["top_words"] = top;
            }
            context.Output.WriteLine(context.Json ? JsonSerializer.Serialize(summary) : string.Create(CultureInfo.InvariantCulture,
                $"done: {k} topics, {options.Iterations} iterations, loglik/token {summary["loglik_per_token"]}, test perplexity {summary["test_perplexity"] ?? "-"}, {summary["tokens_per_sec"]:N0} tokens/s{(summary.TryGetValue("topic_recovery", out var recovery) ? $", true topics recovered at mean cosine {recovery}" : "")}"));
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }

    /// <summary>
    /// Waits until every live worker has finished <paramref name="iteration"/> (its metrics row counts the workers that
    /// did, and each pushes its changes before that row). A worker that died after reporting still counts there, so
    /// its death can let one wait end early: the bound is then one sweep looser, never a hang.
    /// </summary>
    private static async Task WaitForWorkersAsync(WorkerContext context, PsTable metrics, long iteration, float[] row, CancellationToken cancellationToken)
    {
        if (iteration < 1)
        {
            return;
        }
        var client = context.Client;
        float seen = -1;
        long progressed = Stopwatch.GetTimestamp();
        while (true)
        {
            await client.WaitAsync(metrics.PullRange((ulong)iteration, row), cancellationToken).ConfigureAwait(false);
            int live = client.Diagnostics.LiveWorkers;
            if (row[3] >= live)
            {
                return;
            }
            if (row[3] != seen)
            {
                seen = row[3];
                progressed = Stopwatch.GetTimestamp();
            }
            else if (Stopwatch.GetElapsedTime(progressed) > s_progressDeadline)
            {
                throw new TimeoutException($"lda rank {context.Rank} waited {s_progressDeadline.TotalMinutes:0} min for every worker to finish iteration {iteration}: {row[3]:0} of {live} live workers have; see the other workers' logs");
            }
            await Task.Delay(1, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Pulls the whole word-topic table and the totals into <paramref name="counts"/>.</summary>
    private static async Task PullCountsAsync(PsClient client, PsTable wordTopic, PsTable totals, TopicCounts counts, CancellationToken cancellationToken)
    {
        var a = wordTopic.PullRangeInt32(0, counts.WordTopic);
        var b = totals.PullRangeInt32(0, counts.TopicTotals);
        await client.WaitAsync(a, cancellationToken).ConfigureAwait(false);
        await client.WaitAsync(b, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Rows and bytes the servers hold for a table, every copy included (from their stats).</summary>
    private static async Task<(long Rows, long Bytes)> ServerUsageAsync(PsClient client, string table, CancellationToken cancellationToken)
    {
        long rows = 0, bytes = 0;
        foreach (string json in await client.GetServerStatsAsync(cancellationToken).ConfigureAwait(false))
        {
            using var stats = JsonDocument.Parse(json);
            if (!stats.RootElement.TryGetProperty("tables", out var tables))
            {
                continue;
            }
            foreach (var entry in tables.EnumerateArray().Where(t => t.GetProperty("table").GetString() == table))
            {
                rows += entry.GetProperty("keys").GetInt64();
                bytes += entry.GetProperty("bytes").GetInt64();
            }
        }
        return (rows, bytes);
    }

    /// <summary>
    /// Pushes the rows of <paramref name="words"/> whose counts differ from <paramref name="pulled"/> (by the
    /// difference), and the totals' difference, and waits for both.
    /// </summary>
    private static async Task PushChangesAsync(PsClient client, PsTable wordTopic, PsTable totals, TopicCounts counts, TopicCounts pulled, int[] words,
        ulong[] keys, int[] rows, int[] totalsChange, CancellationToken cancellationToken)
    {
        int k = counts.Topics, n = 0;
        foreach (int w in words)
        {
            var now = counts.Row(w);
            var before = pulled.Row(w);
            if (!now.SequenceEqual(before))
            {
                TensorPrimitives.Subtract(now, before, rows.AsSpan(n * k, k));
                keys[n++] = (ulong)w;
            }
        }
        long a = n > 0 ? wordTopic.PushInt32(keys.AsSpan(0, n), rows.AsSpan(0, n * k)) : -1;
        TensorPrimitives.Subtract(counts.TopicTotals, pulled.TopicTotals, totalsChange);
        long b = totals.PushRangeInt32(0, totalsChange);
        if (a >= 0)
        {
            await client.WaitAsync(a, cancellationToken).ConfigureAwait(false);
        }
        await client.WaitAsync(b, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The words that occur in <paramref name="documents"/>, ascending: the only rows a sweep over them can change.</summary>
    private static int[] DistinctWords(Corpus documents, int vocabulary)
    {
        var seen = new bool[vocabulary];
        foreach (int w in documents.Words)
        {
            seen[w] = true;
        }
        var words = new List<int>();
        for (int w = 0; w < vocabulary; w++)
        {
            if (seen[w])
            {
                words.Add(w);
            }
        }
        return [.. words];
    }
}
