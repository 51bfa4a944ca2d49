using System.Globalization;
using System.IO.Compression;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Lda.Data;

/// <summary>
/// Readers of bag-of-words corpora: UCI (<c>docword.txt</c>: three header lines D, W, NNZ, then <c>docID wordID
/// count</c> lines with 1-based ids, sorted by document) and lda-c (one document per line, <c>N id:count ...</c> with
/// 0-based ids and N the number of pairs), each with a vocabulary file of one word per line. Gzip is accepted. Every
/// problem names the file and line.
/// </summary>
public static class BagOfWords
{
    /// <summary>Reads a corpus; <paramref name="format"/> is uci or ldac.</summary>
    public static Corpus Read(string path, string format, string? vocabularyPath)
    {
        var vocabulary = vocabularyPath is null ? null : ReadVocabulary(vocabularyPath);
        return format switch
        {
            "uci" => ReadUci(path, vocabulary, vocabularyPath),
            "ldac" => ReadLdaC(path, vocabulary ?? throw new UsageException("lda-c files carry no vocabulary size: give --vocab FILE"), vocabularyPath!),
            _ => throw new UsageException($"--format '{format}' is not one of uci, ldac"),
        };
    }

    /// <summary>One word per line; blank lines count (their ids are taken).</summary>
    public static string[] ReadVocabulary(string path)
    {
        using var reader = Open(path);
        var words = new List<string>();
        while (reader.ReadLine() is { } line)
        {
            words.Add(line.Trim());
        }
        if (words.Count == 0)
        {
            throw new DataFormatException($"{path}: the vocabulary file is empty");
        }
        return words.ToArray();
    }

    public static Corpus ReadUci(string path, IReadOnlyList<string>? vocabulary, string? vocabularyPath)
    {
        using var reader = Open(path);
        long line = 0;
        long Header(string what)
        {
            line++;
            string? text = reader.ReadLine();
            if (text is null || !long.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                throw DataFormatException.AtLine(path, line, $"expected the UCI header's {what} (a number), got '{Clip(text)}'");
            }
            return value;
        }
        long documents = Header("document count D");
        long vocabularySize = Header("vocabulary size W");
        long pairs = Header("number of (document, word) pairs NNZ");
        if (documents > int.MaxValue || vocabularySize > int.MaxValue)
        {
            throw DataFormatException.AtLine(path, 2, $"{documents} documents and {vocabularySize} words are more than this reader holds ({int.MaxValue})");
        }
        if (vocabulary is not null && vocabulary.Count < vocabularySize)
        {
            throw new DataFormatException($"{vocabularyPath} has {vocabulary.Count} words, fewer than the {vocabularySize} that {path} declares (line 2)");
        }
        var starts = new int[documents + 1];
        var words = new List<int>();
        long read = 0;
        int lastDocument = 0;
        Span<Range> fields = stackalloc Range[4];
        while (reader.ReadLine() is { } text)
        {
            line++;
            var span = text.AsSpan().Trim();
            if (span.IsEmpty)
            {
                continue;
            }
            if (span.Split(fields, ' ', StringSplitOptions.RemoveEmptyEntries) != 3
                || !int.TryParse(span[fields[0]], NumberStyles.None, CultureInfo.InvariantCulture, out int document)
                || !int.TryParse(span[fields[1]], NumberStyles.None, CultureInfo.InvariantCulture, out int word)
                || !int.TryParse(span[fields[2]], NumberStyles.None, CultureInfo.InvariantCulture, out int count))
            {
                throw DataFormatException.AtLine(path, line, $"expected 'docID wordID count' (three whole numbers), got '{Clip(text)}'");
            }
            if (document < 1 || document > documents)
            {
                throw DataFormatException.AtLine(path, line, $"document id {document} is outside 1..{documents} (the header's D)");
            }
            if (word < 1 || word > vocabularySize)
            {
                throw DataFormatException.AtLine(path, line, $"word id {word} is outside 1..{vocabularySize} (the header's W)");
            }
            if (count < 1)
            {
                throw DataFormatException.AtLine(path, line, $"count {count} must be at least 1");
            }
            if (document < lastDocument)
            {
                throw DataFormatException.AtLine(path, line, $"document {document} follows document {lastDocument}: the lines must be sorted by document");
            }
            for (int d = lastDocument; d < document; d++)
            {
                starts[d] = words.Count; // documents without lines are empty
            }
            lastDocument = document;
            for (int c = 0; c < count; c++)
            {
                words.Add(word - 1);
            }
            read++;
        }
        if (read != pairs)
        {
            throw DataFormatException.AtLine(path, line, $"the header announces {pairs} (document, word) pairs, the file holds {read}");
        }
        for (int d = lastDocument; d <= documents; d++)
        {
            starts[d] = words.Count;
        }
        return new Corpus(starts, words.ToArray(), (int)vocabularySize, vocabulary);
    }

    public static Corpus ReadLdaC(string path, IReadOnlyList<string> vocabulary, string vocabularyPath)
    {
        using var reader = Open(path);
        var starts = new List<int> { 0 };
        var words = new List<int>();
        long line = 0;
        while (reader.ReadLine() is { } text)
        {
            line++;
            var span = text.AsSpan().Trim();
            if (span.IsEmpty)
            {
                continue;
            }
            int space = span.IndexOf(' ');
            var head = space < 0 ? span : span[..space];
            if (!int.TryParse(head, NumberStyles.None, CultureInfo.InvariantCulture, out int announced))
            {
                throw DataFormatException.AtLine(path, line, $"expected 'N id:count ...' starting with the number of pairs, got '{Clip(text)}'");
            }
            int pairs = 0;
            var rest = space < 0 ? ReadOnlySpan<char>.Empty : span[(space + 1)..];
            foreach (var range in rest.Split(' '))
            {
                var pair = rest[range];
                if (pair.IsEmpty)
                {
                    continue;
                }
                int colon = pair.IndexOf(':');
                if (colon < 0
                    || !int.TryParse(pair[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out int word)
                    || !int.TryParse(pair[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int count))
                {
                    throw DataFormatException.AtLine(path, line, $"pair {pairs + 1} '{pair}' is not id:count with whole numbers");
                }
                if (word >= vocabulary.Count)
                {
                    throw DataFormatException.AtLine(path, line, $"word id {word} is beyond the {vocabulary.Count} words of {vocabularyPath}");
                }
                if (count < 1)
                {
                    throw DataFormatException.AtLine(path, line, $"word {word} has count {count}; counts must be at least 1");
                }
                for (int c = 0; c < count; c++)
                {
                    words.Add(word);
                }
                pairs++;
            }
            if (pairs != announced)
            {
                throw DataFormatException.AtLine(path, line, $"the line announces {announced} pairs and holds {pairs}");
            }
            starts.Add(words.Count);
        }
        if (line == 0)
        {
            throw new DataFormatException($"{path}: the file is empty");
        }
        return new Corpus(starts.ToArray(), words.ToArray(), vocabulary.Count, vocabulary);
    }

    private static StreamReader Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new DataFormatException($"{path}: the file does not exist");
        }
        Stream stream = File.OpenRead(path);
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            stream = new GZipStream(stream, CompressionMode.Decompress);
        }
        return new StreamReader(stream);
    }

    private static string Clip(string? text) => text is null ? "end of file" : text.Length <= 60 ? text : text[..60] + "...";
}
