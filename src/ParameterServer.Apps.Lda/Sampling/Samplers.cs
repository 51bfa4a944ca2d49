using ParameterServer.Apps.Lda.Data;

namespace ParameterServer.Apps.Lda.Sampling;

/// <summary>One sweep of collapsed Gibbs sampling over a worker's documents, changing the counts in place.</summary>
public interface ITopicSampler
{
    /// <summary>
    /// Resamples the topic of every token of <paramref name="documents"/> (<paramref name="topicOfToken"/>, one entry per
    /// token) against <paramref name="counts"/>, which it keeps up to date; each change is also added to
    /// <paramref name="changes"/> when given (what a worker pushes).
    /// </summary>
    void Sweep(Corpus documents, int[] topicOfToken, TopicCounts counts, TopicCounts? changes, ref FastRandom random);
}

/// <summary>
/// LightLDA's sampler (Yuan et al., WWW'15): per token, Metropolis-Hastings steps alternating a word proposal (an alias
/// table of (n_wk + beta) / (n_k + V beta), built once per sweep) and a document proposal (the topic of a random token
/// of the document, or a uniform topic, which is proportional to n_dk + alpha), each accepted by the ratio of the true
/// conditional to the proposal. O(1) per token whatever the number of topics.
/// </summary>
public sealed class LightLdaSampler(LdaPriors priors, int vocabulary, int topics, int steps = 2) : ITopicSampler
{
    private readonly AliasTables _proposals = new(vocabulary, topics);
    private readonly int[] _documentTopic = new int[topics];

    public void Sweep(Corpus documents, int[] topicOfToken, TopicCounts counts, TopicCounts? changes, ref FastRandom random)
    {
        int k = topics;
        float alpha = (float)priors.Alpha, beta = (float)priors.Beta, betaSum = (float)(priors.Beta * counts.Vocabulary);
        var wordTopic = counts.WordTopic;
        var totals = counts.TopicTotals;
        var weights = _proposals.Weights;
        for (int w = 0; w < counts.Vocabulary; w++)
        {
            int row = w * k;
            for (int t = 0; t < k; t++)
            {
                weights[row + t] = (Math.Max(0, wordTopic[row + t]) + beta) / (Math.Max(0, totals[t]) + betaSum);
            }
            _proposals.Build(w);
        }
        var docTopic = _documentTopic;
        var words = documents.Words;
        var starts = documents.DocumentStarts;
        for (int d = 0; d < documents.Documents; d++)
        {
            int start = starts[d], end = starts[d + 1], length = end - start;
            for (int i = start; i < end; i++)
            {
                docTopic[topicOfToken[i]]++;
            }
            float docMass = length + (k * alpha);
            for (int i = start; i < end; i++)
            {
                int w = words[i], row = w * k, old = topicOfToken[i];
                docTopic[old]--;
                wordTopic[row + old]--;
                totals[old]--;
                int t = old;
                for (int step = 0; step < steps; step++)
                {
                    // Word proposal: accept c over t by p(c) q_w(t) / (p(t) q_w(c)).
                    int c = _proposals.Sample(w, ref random);
                    if (c != t)
                    {
                        float ratio = Conditional(c, row) * weights[row + t] / (Conditional(t, row) * weights[row + c]);
                        if (ratio >= 1 || random.NextFloat() < ratio)
                        {
                            t = c;
                        }
                    }
                    // Document proposal: a random token's topic (the token itself still holds `old`), or a uniform one.
                    float u = random.NextFloat() * docMass;
                    c = u < length ? topicOfToken[start + (int)u] : random.Next(k);
                    if (c != t)
                    {
                        float ratio = Conditional(c, row) * (docTopic[t] + alpha + (t == old ? 1 : 0)) / (Conditional(t, row) * (docTopic[c] + alpha + (c == old ? 1 : 0)));
                        if (ratio >= 1 || random.NextFloat() < ratio)
                        {
                            t = c;
                        }
                    }
                }
                TokenMoves.Assign(i, old, t, row, docTopic, counts, topicOfToken, changes);
            }
            for (int i = start; i < end; i++)
            {
                docTopic[topicOfToken[i]] = 0;
            }
        }

        // The collapsed conditional of topic j for the current token (counts without it); stale copies of other
        // workers' counts can dip below zero for a moment, so they are clamped.
        float Conditional(int j, int row) => (docTopic[j] + alpha) * (Math.Max(0, wordTopic[row + j]) + beta) / (Math.Max(0, totals[j]) + betaSum);
    }
}

/// <summary>The textbook collapsed Gibbs sampler: O(K) per token. The reference the fast sampler is checked against.</summary>
public sealed class GibbsSampler(LdaPriors priors, int topics) : ITopicSampler
{
    private readonly int[] _documentTopic = new int[topics];
    private readonly double[] _cumulative = new double[topics];

    public void Sweep(Corpus documents, int[] topicOfToken, TopicCounts counts, TopicCounts? changes, ref FastRandom random)
    {
        int k = topics;
        double alpha = priors.Alpha, beta = priors.Beta, betaSum = priors.Beta * counts.Vocabulary;
        var wordTopic = counts.WordTopic;
        var totals = counts.TopicTotals;
        var docTopic = _documentTopic;
        for (int d = 0; d < documents.Documents; d++)
        {
            int start = documents.DocumentStarts[d], end = documents.DocumentStarts[d + 1];
            for (int i = start; i < end; i++)
            {
                docTopic[topicOfToken[i]]++;
            }
            for (int i = start; i < end; i++)
            {
                int w = documents.Words[i], row = w * k, old = topicOfToken[i];
                docTopic[old]--;
                wordTopic[row + old]--;
                totals[old]--;
                double sum = 0;
                for (int j = 0; j < k; j++)
                {
                    sum += (docTopic[j] + alpha) * (Math.Max(0, wordTopic[row + j]) + beta) / (Math.Max(0, totals[j]) + betaSum);
                    _cumulative[j] = sum;
                }
                double u = random.NextFloat() * sum;
                int t = 0;
                while (t < k - 1 && _cumulative[t] <= u)
                {
                    t++;
                }
                TokenMoves.Assign(i, old, t, row, docTopic, counts, topicOfToken, changes);
            }
            for (int i = start; i < end; i++)
            {
                docTopic[topicOfToken[i]] = 0;
            }
        }
    }
}

/// <summary>What every sampler does once it has drawn a token's topic.</summary>
internal static class TokenMoves
{
    /// <summary>Counts token <paramref name="i"/> under topic <paramref name="t"/> (it was taken out of <paramref name="old"/>), and records the move.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static void Assign(int i, int old, int t, int row, int[] docTopic, TopicCounts counts, int[] topicOfToken, TopicCounts? changes)
    {
        docTopic[t]++;
        counts.WordTopic[row + t]++;
        counts.TopicTotals[t]++;
        topicOfToken[i] = t;
        if (t != old && changes is not null)
        {
            changes.WordTopic[row + old]--;
            changes.WordTopic[row + t]++;
            changes.TopicTotals[old]--;
            changes.TopicTotals[t]++;
        }
    }
}
