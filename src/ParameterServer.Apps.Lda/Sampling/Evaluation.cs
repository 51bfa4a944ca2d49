using ParameterServer.Apps.Lda.Data;

namespace ParameterServer.Apps.Lda.Sampling;

/// <summary>How good a topic model is: the collapsed log-likelihood of the training data, and held-out perplexity.</summary>
public static class Evaluation
{
    /// <summary>
    /// The words' part of log p(w | z): sum over topics of log Γ(Vβ) − log Γ(n_k + Vβ) + Σ_w [log Γ(n_wk + β) − log Γ(β)].
    /// </summary>
    public static double WordLogLikelihood(TopicCounts counts, LdaPriors priors)
    {
        int k = counts.Topics;
        double beta = priors.Beta, betaSum = beta * counts.Vocabulary, logGammaBeta = LogGamma(beta);
        double sum = k * LogGamma(betaSum);
        for (int t = 0; t < k; t++)
        {
            sum -= LogGamma(Math.Max(0, counts.TopicTotals[t]) + betaSum);
        }
        foreach (int n in counts.WordTopic)
        {
            if (n > 0)
            {
                sum += LogGamma(n + beta) - logGammaBeta; // a zero count adds nothing
            }
        }
        return sum;
    }

    /// <summary>The documents' part of log p(z): Σ_d log Γ(Kα) − log Γ(N_d + Kα) + Σ_k [log Γ(n_dk + α) − log Γ(α)].</summary>
    public static double DocumentLogLikelihood(Corpus documents, int[] topicOfToken, int topics, LdaPriors priors)
    {
        double alpha = priors.Alpha, logGammaAlpha = LogGamma(alpha), logGammaAlphaSum = LogGamma(topics * alpha);
        var docTopic = new int[topics];
        double sum = 0;
        for (int d = 0; d < documents.Documents; d++)
        {
            int start = documents.DocumentStarts[d], end = documents.DocumentStarts[d + 1];
            for (int i = start; i < end; i++)
            {
                docTopic[topicOfToken[i]]++;
            }
            sum += logGammaAlphaSum - LogGamma(end - start + (topics * alpha));
            for (int t = 0; t < topics; t++)
            {
                if (docTopic[t] > 0)
                {
                    sum += LogGamma(docTopic[t] + alpha) - logGammaAlpha;
                    docTopic[t] = 0;
                }
            }
        }
        return sum;
    }

    /// <summary>
    /// Held-out perplexity by document completion: with the topics fixed at the trained counts, each test document's
    /// topic mix is fitted by Gibbs sampling on its even-numbered tokens and its odd-numbered tokens are scored,
    /// exp(−Σ log p(w) / tokens scored). A word never seen in training is scored with the prior. Documents of fewer
    /// than two tokens are skipped.
    /// </summary>
    public static double Perplexity(TopicCounts trained, Corpus test, LdaPriors priors, int sweeps = 50, int burnIn = 20, ulong seed = 7)
    {
        int k = trained.Topics;
        double alpha = priors.Alpha, beta = priors.Beta, betaSum = beta * trained.Vocabulary;
        var phiDenominator = new double[k];
        for (int t = 0; t < k; t++)
        {
            phiDenominator[t] = Math.Max(0, trained.TopicTotals[t]) + betaSum;
        }
        double Phi(int word, int t) => word < trained.Vocabulary ? (Math.Max(0, trained.WordTopic[(word * k) + t]) + beta) / phiDenominator[t] : beta / phiDenominator[t];
        var random = new FastRandom(seed);
        var docTopic = new int[k];
        var theta = new double[k];
        var cumulative = new double[k];
        double logSum = 0;
        long scored = 0;
        for (int d = 0; d < test.Documents; d++)
        {
            var words = test.Document(d);
            int fit = (words.Length + 1) / 2;
            if (words.Length < 2)
            {
                continue;
            }
            var z = new int[fit];
            for (int i = 0; i < fit; i++)
            {
                z[i] = random.Next(k);
                docTopic[z[i]]++;
            }
            Array.Clear(theta);
            int samples = 0;
            for (int sweep = 0; sweep < sweeps; sweep++)
            {
                for (int i = 0; i < fit; i++)
                {
                    int w = words[2 * i];
                    docTopic[z[i]]--;
                    double sum = 0;
                    for (int t = 0; t < k; t++)
                    {
                        sum += (docTopic[t] + alpha) * Phi(w, t);
                        cumulative[t] = sum;
                    }
                    double u = random.NextFloat() * sum;
                    int pick = 0;
                    while (pick < k - 1 && cumulative[pick] <= u)
                    {
                        pick++;
                    }
                    z[i] = pick;
                    docTopic[pick]++;
                }
                if (sweep >= burnIn)
                {
                    for (int t = 0; t < k; t++)
                    {
                        theta[t] += (docTopic[t] + alpha) / (fit + (k * alpha));
                    }
                    samples++;
                }
            }
            for (int i = 1; i < words.Length; i += 2)
            {
                double p = 0;
                for (int t = 0; t < k; t++)
                {
                    p += theta[t] / samples * Phi(words[i], t);
                }
                logSum += Math.Log(p);
                scored++;
            }
            Array.Clear(docTopic);
        }
        return scored == 0 ? double.NaN : Math.Exp(-logSum / scored);
    }

    /// <summary>log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits).</summary>
    public static double LogGamma(double x)
    {
        if (x < 0.5)
        {
            return Math.Log(Math.PI / Math.Sin(Math.PI * x)) - LogGamma(1 - x); // reflection
        }
        x -= 1;
        double a = 0.99999999999980993;
        double t = x + 7.5;
        a += 676.5203681218851 / (x + 1);
        a += -1259.1392167224028 / (x + 2);
        a += 771.32342877765313 / (x + 3);
        a += -176.61502916214059 / (x + 4);
        a += 12.507343278686905 / (x + 5);
        a += -0.13857109526572012 / (x + 6);
        a += 9.9843695780195716e-6 / (x + 7);
        a += 1.5056327351493116e-7 / (x + 8);
        return (0.5 * Math.Log(2 * Math.PI)) + ((x + 0.5) * Math.Log(t)) - t + Math.Log(a);
    }
}
