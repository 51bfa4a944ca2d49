namespace ParameterServer.Apps.Lda.Data;

/// <summary>
/// Documents as token lists: every token's word id (0-based), documents one after another (<see cref="DocumentStarts"/>
/// has one entry more than there are documents). Word ids index the vocabulary, whose size bounds them.
/// </summary>
public sealed class Corpus
{
    public Corpus(int[] documentStarts, int[] words, int vocabularySize, IReadOnlyList<string>? vocabulary = null)
    {
        ArgumentNullException.ThrowIfNull(documentStarts);
        ArgumentNullException.ThrowIfNull(words);
        if (documentStarts.Length == 0 || documentStarts[0] != 0 || documentStarts[^1] != words.Length)
        {
            throw new ArgumentException("document starts must run from 0 to the number of tokens", nameof(documentStarts));
        }
        DocumentStarts = documentStarts;
        Words = words;
        VocabularySize = vocabularySize;
        Vocabulary = vocabulary;
    }

    public int[] DocumentStarts { get; }

    /// <summary>Every token's word id, in document order.</summary>
    public int[] Words { get; }

    public int VocabularySize { get; }

    /// <summary>The words, by id, when a vocabulary file was read.</summary>
    public IReadOnlyList<string>? Vocabulary { get; }

    public int Documents => DocumentStarts.Length - 1;

    public int Tokens => Words.Length;

    public ReadOnlySpan<int> Document(int d) => Words.AsSpan(DocumentStarts[d], DocumentStarts[d + 1] - DocumentStarts[d]);

    /// <summary>The documents for which <paramref name="keep"/> holds, in order.</summary>
    public Corpus Select(Func<int, bool> keep)
    {
        var starts = new List<int> { 0 };
        var words = new List<int>();
        for (int d = 0; d < Documents; d++)
        {
            if (keep(d))
            {
                words.AddRange(Document(d));
                starts.Add(words.Count);
            }
        }
        return new Corpus(starts.ToArray(), words.ToArray(), VocabularySize, Vocabulary);
    }

    /// <summary>Training and test documents: every <paramref name="every"/>-th document (the last of each run) is held out.</summary>
    public (Corpus Train, Corpus Test) HoldOut(int every)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(every, 2);
        return (Select(d => d % every != every - 1), Select(d => d % every == every - 1));
    }

    /// <summary>One worker's documents: every <paramref name="workers"/>-th from its rank on.</summary>
    public Corpus Shard(int rank, int workers) => workers == 1 ? this : Select(d => d % workers == rank);
}
