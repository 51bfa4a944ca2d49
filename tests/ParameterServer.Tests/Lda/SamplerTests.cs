using ParameterServer.Apps.Lda;
using ParameterServer.Apps.Lda.Data;
using ParameterServer.Apps.Lda.Sampling;

namespace ParameterServer.Tests.Lda;

/// <summary>The samplers keep exact counts, find planted topics, and the fast one matches the O(K) reference.</summary>
public sealed class SamplerTests
{
    /// <summary>Documents drawn from 4 topics with disjoint vocabularies, 2 topics per document.</summary>
    private static Corpus Planted(int documents = 400, int length = 60, int seed = 3)
    {
        var random = new Random(seed);
        var starts = new List<int> { 0 };
        var words = new List<int>();
        for (int d = 0; d < documents; d++)
        {
            int a = random.Next(4), b = random.Next(4);
            for (int i = 0; i < length; i++)
            {
                int topic = random.Next(2) == 0 ? a : b;
                words.Add((topic * 25) + random.Next(25));
            }
            starts.Add(words.Count);
        }
        return new Corpus(starts.ToArray(), words.ToArray(), 100);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Counts_stay_exact_and_the_changes_add_up_to_the_difference(bool exact)
    {
        var corpus = Planted();
        var lda = new LdaLocal(corpus, 8, new LdaPriors(0.1, 0.1), exact);
        var before = (int[])lda.Counts.WordTopic.Clone();
        var changes = new TopicCounts(100, 8);
        var sampler = exact ? (ITopicSampler)new GibbsSampler(lda.Priors, 8) : new LightLdaSampler(lda.Priors, 100, 8);
        var random = new FastRandom(9);
        sampler.Sweep(corpus, lda.TopicOfToken, lda.Counts, changes, ref random);
        Assert.Equal(corpus.Tokens, lda.Counts.TokenCount());
        var recount = new TopicCounts(100, 8);
        for (int i = 0; i < corpus.Tokens; i++)
        {
            recount.WordTopic[(corpus.Words[i] * 8) + lda.TopicOfToken[i]]++;
            recount.TopicTotals[lda.TopicOfToken[i]]++;
        }
        Assert.Equal(recount.WordTopic, lda.Counts.WordTopic);
        Assert.Equal(recount.TopicTotals, lda.Counts.TopicTotals);
        Assert.Equal(lda.Counts.WordTopic, before.Zip(changes.WordTopic, (b, c) => b + c));
        Assert.Equal(0, changes.TopicTotals.Sum());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Planted_topics_are_found(bool exact)
    {
        var corpus = Planted();
        var lda = new LdaLocal(corpus, 4, new LdaPriors(0.1, 0.01), exact);
        double start = lda.LogLikelihoodPerToken();
        for (int i = 0; i < 60; i++)
        {
            lda.Sweep();
        }
        Assert.True(lda.LogLikelihoodPerToken() > start + 0.5, $"log-likelihood per token {start} -> {lda.LogLikelihoodPerToken()}");
        // Every topic is one planted block: at least 95% of its tokens come from one run of 25 word ids.
        for (int t = 0; t < 4; t++)
        {
            var byBlock = Enumerable.Range(0, 4).Select(b => Enumerable.Range(b * 25, 25).Sum(w => lda.Counts.WordTopic[(w * 4) + t])).ToArray();
            Assert.True(byBlock.Max() >= 0.95 * byBlock.Sum(), $"topic {t}: tokens per planted block {string.Join(", ", byBlock)}");
        }
    }

    [Fact]
    public void Alias_tables_draw_topics_in_proportion_to_their_weights()
    {
        var tables = new AliasTables(2, 5);
        float[] weights = [0.5f, 3f, 0f, 1f, 0.5f];
        weights.CopyTo(tables.Weights.AsSpan(5, 5));
        tables.Build(1);
        var random = new FastRandom(4);
        var counts = new int[5];
        const int draws = 200_000;
        for (int i = 0; i < draws; i++)
        {
            counts[tables.Sample(1, ref random)]++;
        }
        for (int t = 0; t < 5; t++)
        {
            Assert.Equal(weights[t] / 5.0, counts[t] / (double)draws, 2);
        }
    }

    [Fact]
    public void Log_gamma_matches_known_values_and_a_uniform_model_has_the_vocabulary_size_as_perplexity()
    {
        Assert.Equal(0, Evaluation.LogGamma(1), 12);
        Assert.Equal(0, Evaluation.LogGamma(2), 12);
        Assert.Equal(Math.Log(Math.Sqrt(Math.PI)), Evaluation.LogGamma(0.5), 12);
        Assert.Equal(Math.Log(362880), Evaluation.LogGamma(10), 10);
        Assert.Equal(Math.Log(Math.PI / Math.Sin(Math.PI * 0.1)) - Evaluation.LogGamma(0.9), Evaluation.LogGamma(0.1), 12);
        var empty = new TopicCounts(100, 4); // no training tokens: every word has the prior's probability 1/V
        Assert.Equal(100, Evaluation.Perplexity(empty, Planted(20), new LdaPriors(0.1, 0.1)), 6);
    }

    [Fact]
    public void Test_words_never_seen_in_training_are_scored_with_the_prior()
    {
        var lda = new LdaLocal(Planted(), 4, new LdaPriors(0.1, 0.1));
        for (int i = 0; i < 10; i++)
        {
            lda.Sweep();
        }
        // Word 150 is beyond the 100 words the model was trained on; the document still scores.
        var test = new Corpus([0, 6], [0, 150, 1, 150, 2, 150], 151);
        double perplexity = Evaluation.Perplexity(lda.Counts, test, lda.Priors);
        Assert.True(double.IsFinite(perplexity) && perplexity > 1, $"perplexity {perplexity}");
    }

    [Theory]
    [InlineData(0, 10, 0, "--topics")]
    [InlineData(20, 0, 0, "--iterations")]
    [InlineData(20, 10, 1, "--hold-out")]
    public void Bad_options_are_refused_naming_the_option(int topics, int iterations, int holdOut, string option)
    {
        var options = new LdaOptions { Data = "x", Topics = topics, Iterations = iterations, HoldOut = holdOut };
        Assert.Contains(option, Assert.Throws<ArgumentException>(options.Validate).Message);
    }
}
