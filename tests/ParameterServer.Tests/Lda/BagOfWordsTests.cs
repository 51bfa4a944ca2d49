using ParameterServer.Apps.Lda.Data;
using ParameterServer.Hosting;
using ParameterServer.TestKit;

namespace ParameterServer.Tests.Lda;

/// <summary>The UCI and lda-c readers: what they read, and errors that name the file and line.</summary>
public sealed class BagOfWordsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-lda-data-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private string Vocab(int words) => Write("vocab.txt", string.Join('\n', Enumerable.Range(0, words).Select(i => $"w{i}")) + "\n");

    [Fact]
    public void Uci_files_become_token_lists_with_0_based_ids_and_empty_documents_kept()
    {
        string path = Write("docword.txt", "4\n5\n4\n1 1 2\n1 5 1\n3 2 3\n4 4 1\n");
        var corpus = BagOfWords.Read(path, "uci", Vocab(5));
        Assert.Equal(4, corpus.Documents);
        Assert.Equal(7, corpus.Tokens);
        Assert.Equal([0, 0, 4], corpus.Document(0).ToArray());
        Assert.Equal(0, corpus.Document(1).Length); // document 2 has no lines
        Assert.Equal([1, 1, 1], corpus.Document(2).ToArray());
        Assert.Equal("w4", corpus.Vocabulary![4]);
        var (train, test) = corpus.HoldOut(2);
        Assert.Equal(2, test.Documents);
        Assert.Equal(0, test.Document(0).Length);
        Assert.Equal([3], test.Document(1).ToArray());
        Assert.Equal(3, train.Document(0).Length);
    }

    [Theory]
    [InlineData("3\n5\n1\nx 1 1\n", "docword.txt:4", "three whole numbers")]
    [InlineData("3\n5\n1\n1 6 1\n", "docword.txt:4", "word id 6 is outside 1..5")]
    [InlineData("3\n5\n1\n4 1 1\n", "docword.txt:4", "document id 4 is outside 1..3")]
    [InlineData("3\n5\n2\n2 1 1\n1 1 1\n", "docword.txt:5", "must be sorted by document")]
    [InlineData("3\n5\n3\n1 1 1\n2 2 2\n", "docword.txt:5", "announces 3 (document, word) pairs, the file holds 2")]
    [InlineData("3\n5\n1\n1 1 0\n", "docword.txt:4", "count 0 must be at least 1")]
    [InlineData("three\n5\n1\n", "docword.txt:1", "document count D")]
    public void Malformed_uci_lines_are_refused_naming_file_and_line(string text, string where, string what)
    {
        string path = Write("docword.txt", text);
        var ex = Assert.Throws<DataFormatException>(() => BagOfWords.Read(path, "uci", null));
        Assert.Contains(where, ex.Message);
        Assert.Contains(what, ex.Message);
    }

    [Fact]
    public void A_vocabulary_shorter_than_the_declared_word_count_is_refused_naming_both_files()
    {
        string path = Write("docword.txt", "1\n9\n1\n1 9 1\n");
        var ex = Assert.Throws<DataFormatException>(() => BagOfWords.Read(path, "uci", Vocab(5)));
        Assert.Contains("vocab.txt has 5 words, fewer than the 9", ex.Message);
    }

    [Fact]
    public void Ldac_lines_are_read_and_their_pair_counts_checked()
    {
        var corpus = BagOfWords.Read(Write("c.ldac", "2 0:2 3:1\n0\n1 4:2\n"), "ldac", Vocab(5));
        Assert.Equal(3, corpus.Documents);
        Assert.Equal([0, 0, 3], corpus.Document(0).ToArray());
        Assert.Equal(0, corpus.Document(1).Length);
        Assert.Equal([4, 4], corpus.Document(2).ToArray());

        var short1 = Assert.Throws<DataFormatException>(() => BagOfWords.Read(Write("bad.ldac", "2 0:2 3:1\n3 1:1 2:1\n"), "ldac", Vocab(5)));
        Assert.Contains("bad.ldac:2: the line announces 3 pairs and holds 2", short1.Message);
        var beyond = Assert.Throws<DataFormatException>(() => BagOfWords.Read(Write("far.ldac", "1 5:1\n"), "ldac", Vocab(5)));
        Assert.Contains("far.ldac:1: word id 5 is beyond the 5 words", beyond.Message);
    }

    [Fact]
    public void The_shared_kos_corpus_reads_with_the_counts_its_provenance_gives()
    {
        var corpus = BagOfWords.Read(SharedData.KosDocWords, "uci", SharedData.KosVocabulary);
        Assert.Equal(3430, corpus.Documents);
        Assert.Equal(6906, corpus.VocabularySize);
        Assert.Equal(467714, corpus.Tokens);
    }
}
