namespace ParameterServer.TestKit;

/// <summary>The real data sets in ../shared/data (next to the repository), found by walking up from the test binaries.</summary>
internal static class SharedData
{
    public static string Path(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine([dir.FullName, "shared", "data", .. parts]);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException($"shared/data/{string.Join('/', parts)} was not found above {AppContext.BaseDirectory}; the tests expect the shared data sets next to the repository");
    }

    public static string A9a => Path("a9a", "a9a");

    public static string A9aTest => Path("a9a", "a9a.t");

    /// <summary>The UCI bag-of-words KOS corpus.</summary>
    public static string KosDocWords => Path("kos", "docword.kos.txt");

    public static string KosVocabulary => Path("kos", "vocab.kos.txt");

    /// <summary>The folder of the MNIST idx files (gzip-compressed).</summary>
    /// <summary>YouTube-8M's label vocabulary (3,862 entities with their training frequencies and verticals).</summary>
    public static string Youtube8mVocabulary => Path("youtube8m_meta", "vocabulary.csv");

    public static string MnistDirectory => System.IO.Path.GetDirectoryName(Path("mnist", "t10k-labels-idx1-ubyte.gz"))!;
}
