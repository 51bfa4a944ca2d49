using ParameterServer.Apps.Lda.Data;
using ParameterServer.Apps.Lda.Sampling;

namespace ParameterServer.Apps.Lda;

/// <summary>
/// LDA in one process: the single-process reference that the cluster is measured against (the same sampler and
/// counts, no network), and the O(K) Gibbs reference the fast sampler is checked against.
/// </summary>
public sealed class LdaLocal
{
    private readonly Corpus _corpus;
    private readonly ITopicSampler _sampler;
    private FastRandom _random;

    public LdaLocal(Corpus corpus, int topics, LdaPriors priors, bool exactGibbs = false, ulong seed = 1)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        priors.Validate();
        _corpus = corpus;
        Priors = priors;
        Counts = new TopicCounts(corpus.VocabularySize, topics);
        TopicOfToken = new int[corpus.Tokens];
        _random = new FastRandom(seed);
        for (int i = 0; i < TopicOfToken.Length; i++)
        {
            int t = _random.Next(topics);
            TopicOfToken[i] = t;
            Counts.WordTopic[(corpus.Words[i] * topics) + t]++;
            Counts.TopicTotals[t]++;
        }
        _sampler = exactGibbs ? new GibbsSampler(priors, topics) : new LightLdaSampler(priors, corpus.VocabularySize, topics);
    }

    public LdaPriors Priors { get; }

    public TopicCounts Counts { get; }

    public int[] TopicOfToken { get; }

    /// <summary>One sweep over every token.</summary>
    public void Sweep() => _sampler.Sweep(_corpus, TopicOfToken, Counts, null, ref _random);

    /// <summary>Training log-likelihood per token (words given topics, plus topics given documents).</summary>
    public double LogLikelihoodPerToken() =>
        (Evaluation.WordLogLikelihood(Counts, Priors) + Evaluation.DocumentLogLikelihood(_corpus, TopicOfToken, Counts.Topics, Priors)) / Math.Max(1, _corpus.Tokens);
}
