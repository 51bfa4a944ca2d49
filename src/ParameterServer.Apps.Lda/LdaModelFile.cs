using System.Globalization;
using ParameterServer.Apps.Lda.Sampling;

namespace ParameterServer.Apps.Lda;

/// <summary>
/// The trained model as text, for other tools: first line <c>K W alpha beta</c>, then one line per word <c>word_id c_1 ...
/// c_K</c> (word-topic counts; word_id is the 0-based line of the word in the vocabulary file). Written atomically.
/// </summary>
public static class LdaModelFile
{
    public static void Write(string path, TopicCounts counts, LdaPriors priors)
    {
        string temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary))
        {
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{counts.Topics} {counts.Vocabulary} {priors.Alpha} {priors.Beta}"));
            for (int w = 0; w < counts.Vocabulary; w++)
            {
                writer.Write(w.ToString(CultureInfo.InvariantCulture));
                foreach (int n in counts.Row(w))
                {
                    writer.Write(' ');
                    writer.Write(n.ToString(CultureInfo.InvariantCulture));
                }
                writer.WriteLine();
            }
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The <paramref name="top"/> most frequent words of each topic.</summary>
    public static List<string[]> TopWords(TopicCounts counts, IReadOnlyList<string>? vocabulary, int top = 10)
    {
        var topics = new List<string[]>();
        for (int t = 0; t < counts.Topics; t++)
        {
            topics.Add(Enumerable.Range(0, counts.Vocabulary).OrderByDescending(w => counts.WordTopic[(w * counts.Topics) + t]).Take(top)
                .Select(w => vocabulary is not null && w < vocabulary.Count ? vocabulary[w] : w.ToString(CultureInfo.InvariantCulture)).ToArray());
        }
        return topics;
    }
}
