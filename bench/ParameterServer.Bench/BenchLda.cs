using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Apps.Lda;
using ParameterServer.Apps.Lda.Data;
using ParameterServer.Apps.Lda.Sampling;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench lda`: the sampler alone in one process (tokens/s on one core), then the same corpus, topics and
/// sampler on 1 server x 1 worker (pull the counts, sweep, push the changes, every iteration), in the same run.
/// </summary>
public static class BenchLda
{
    /// <summary>--bench-topics.</summary>
    public static readonly Option<int> Topics = PsOptions.Create("--bench-topics", 100, "Topics K for the benchmark");

    /// <summary>--bench-iterations.</summary>
    public static readonly Option<int> Iterations = PsOptions.Create("--bench-iterations", 40, "Sweeps per run (rates are the median of the second half: the first sweeps run slower while the topics form)");

    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        string data = p.GetValue(AppOptions.Data) ?? throw new ArgumentException("bench lda needs --data FILE (e.g. ../shared/data/kos/docword.kos.txt) and --vocab FILE");
        string? vocabulary = p.GetValue(LdaAppDefinition.Vocabulary);
        string format = p.GetValue(LdaAppDefinition.Format)!;
        int topics = p.GetValue(Topics), iterations = Math.Max(2, p.GetValue(Iterations));
        bool json = p.GetValue(PsOptions.Json);
        var corpus = BagOfWords.Read(data, format, vocabulary);
        var priors = new LdaPriors(p.GetValue(LdaAppDefinition.Alpha), p.GetValue(LdaAppDefinition.Beta));
        if (p.GetValue(LdaAppDefinition.HoldOut) is int holdOut and > 0)
        {
            return Quality(corpus, holdOut, topics, iterations, priors, json);
        }

        Console.Error.WriteLine($"bench lda: {corpus.Tokens:N0} tokens, K = {topics}, {iterations} sweeps in one process...");
        LdaLocal? local = new LdaLocal(corpus, topics, priors);
        var rates = new List<double>();
        for (int i = 0; i < iterations; i++)
        {
            long start = Stopwatch.GetTimestamp();
            local!.Sweep();
            rates.Add(corpus.Tokens / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        double single = LaterHalf(rates);
        local = null;
        GC.Collect(); // the cluster's processes get the machine to themselves

        Console.Error.WriteLine("bench lda: the same on 1 server x 1 worker...");
        var args = new List<string> { "--json", "--app", "lda", "--data", Path.GetFullPath(data), "--format", format, "--topics", LocalJob.Inv(topics), "--iterations", LocalJob.Inv(iterations),
            "--alpha", priors.Alpha.ToString(CultureInfo.InvariantCulture), "--beta", priors.Beta.ToString(CultureInfo.InvariantCulture), "--eval-every", LocalJob.Inv(iterations + 1) };
        if (vocabulary is not null)
        {
            args.AddRange(["--vocab", Path.GetFullPath(vocabulary)]);
        }
        var run = await LocalJob.RunAsync(BenchTraining.QuietJob(1, 1, args), ct);
        if (run.Failure is not null)
        {
            throw new PsException(PsErrorCode.Internal, $"the 1x1 lda job failed: {run.Failure}");
        }
        var clusterRates = run.WorkerLines.Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("iteration", out _))
            .Select(e => e.GetProperty("tokens_per_sec").GetDouble()).ToList();
        double cluster = LaterHalf(clusterRates);
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["bench"] = "lda",
                ["tokens"] = corpus.Tokens,
                ["topics"] = topics,
                ["single_process_tokens_per_sec"] = Math.Round(single),
                ["cluster_tokens_per_sec_per_worker"] = Math.Round(cluster),
                ["ratio"] = Math.Round(cluster / single, 3),
            }));
        }
        else
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"lda on {corpus.Tokens:N0} tokens, K = {topics}, LightLDA, median of sweeps {(iterations / 2) + 1}..{iterations}:\n  single process (the sampler alone, one core): {single,12:N0} tokens/s\n  1 server x 1 worker (pull, sweep, push):      {cluster,12:N0} tokens/s  ({cluster / single:0.00} x)"));
        }
        return ExitCodes.Ok;
    }

    /// <summary>
    /// The median rate of the second half of the sweeps. A sampler speeds up over its first sweeps (about 1.7x from the
    /// first to the twentieth at K = 100 on KOS) as the topics sharpen and fewer tokens move, so the early ones would
    /// measure the warm-up of the model rather than the steady state a long run spends its time in.
    /// </summary>
    private static double LaterHalf(List<double> rates)
    {
        var later = rates.Skip(rates.Count / 2).Order().ToList();
        return later.Count == 0 ? 0 : later[later.Count / 2];
    }

    /// <summary>
    /// With --hold-out N: the single-process references, LightLDA's sampler and the O(K) Gibbs sampler, trained on the
    /// same split for the same sweeps and scored by the same held-out document completion as `pserver train lda`.
    /// </summary>
    private static int Quality(Corpus corpus, int holdOut, int topics, int iterations, LdaPriors priors, bool json)
    {
        var (train, test) = corpus.HoldOut(holdOut);
        foreach (bool exact in new[] { false, true })
        {
            string sampler = exact ? "gibbs" : "lightlda";
            Console.Error.WriteLine($"bench lda: {sampler} in one process, {iterations} sweeps...");
            var lda = new LdaLocal(train, topics, priors, exact);
            long ticks = 0;
            for (int i = 0; i < iterations; i++)
            {
                long start = Stopwatch.GetTimestamp();
                lda.Sweep();
                ticks += Stopwatch.GetTimestamp() - start;
            }
            double rate = (double)train.Tokens * iterations / Stopwatch.GetElapsedTime(0, ticks).TotalSeconds;
            double perplexity = Evaluation.Perplexity(lda.Counts, test, priors);
            Console.Out.WriteLine(json
                ? JsonSerializer.Serialize(new Dictionary<string, object> { ["bench"] = "lda-quality", ["sampler"] = sampler, ["topics"] = topics, ["iterations"] = iterations, ["test_perplexity"] = Math.Round(perplexity, 2), ["tokens_per_sec"] = Math.Round(rate) })
                : string.Create(CultureInfo.InvariantCulture, $"one process, {sampler,-8} K = {topics}, {iterations} sweeps, every {holdOut}th document held out: perplexity {perplexity,8:0.0}, {rate,12:N0} tokens/s"));
        }
        return ExitCodes.Ok;
    }
}
