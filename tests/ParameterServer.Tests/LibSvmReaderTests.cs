using ParameterServer.Hosting;
using System.IO.Compression;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using ParameterServer.Apps.LogReg.Data;

namespace ParameterServer.Tests;

public sealed class LibSvmReaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-libsvm-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text, bool gzip = false)
    {
        string path = Path.Combine(_dir, name);
        if (gzip)
        {
            using var file = File.Create(path);
            using var zip = new GZipStream(file, CompressionLevel.Fastest);
            zip.Write(Encoding.UTF8.GetBytes(text));
        }
        else
        {
            File.WriteAllText(path, text);
        }
        return path;
    }

    private static List<(float Label, (ulong Key, float Value)[] Features)> ReadAll(string path, int shard = 0, int shards = 1, LibSvmOptions? options = null)
    {
        var rows = new List<(float, (ulong, float)[])>();
        using var reader = new LibSvmReader(path, shard, shards, options ?? new LibSvmOptions { Bias = false });
        var batch = new MiniBatch();
        while (reader.ReadBatch(batch, 3))
        {
            for (int r = 0; r < batch.Rows; r++)
            {
                var features = new List<(ulong, float)>();
                for (int j = batch.RowStarts[r]; j < batch.RowStarts[r + 1]; j++)
                {
                    features.Add((batch.Keys[j], batch.Values[j]));
                }
                rows.Add((batch.Labels[r], features.ToArray()));
            }
        }
        return rows;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reads_labels_features_and_the_svmlight_extras(bool gzip)
    {
        string path = Write("a.txt", "+1 3:1 11:0.5 \n-1 qid:7 2:1e-3\r\n\n# a comment line\n1 5:2 # trailing comment\n0 7:-1.25", gzip);
        var rows = ReadAll(path);
        Assert.Equal(4, rows.Count);
        Assert.Equal([1f, 0f, 1f, 0f], rows.Select(r => r.Label));
        Assert.Equal([(3UL, 1f), (11UL, 0.5f)], rows[0].Features);
        Assert.Equal([(2UL, 1e-3f)], rows[1].Features);
        Assert.Equal([(5UL, 2f)], rows[2].Features);
        Assert.Equal([(7UL, -1.25f)], rows[3].Features);
    }

    [Fact]
    public void Adds_the_bias_feature_and_hashes_ids_when_asked()
    {
        string path = Write("b.txt", "+1 3:1\n");
        var withBias = ReadAll(path, options: new LibSvmOptions());
        Assert.Equal([(LibSvmReader.BiasKey, 1f), (3UL, 1f)], withBias[0].Features);
        var hashed = ReadAll(path, options: new LibSvmOptions { HashBits = 4, Bias = false });
        Assert.InRange(hashed[0].Features[0].Key, 1UL, 16UL);
    }

    [Fact]
    public void Shards_cover_every_line_exactly_once_property()
    {
        var gen =
            from lines in Gen.Choose(0, 60)
            from shards in Gen.Choose(1, 7)
            from widths in Gen.Choose(0, 30).ListOf(lines)
            select (lines, shards, widths);
        int file = 0;
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var text = new StringBuilder();
            var widths = t.widths.ToList();
            for (int i = 0; i < t.lines; i++)
            {
                text.Append(i % 2 == 0 ? "+1" : "-1").Append(' ').Append(i + 1).Append(":1").Append(new string(' ', widths[i])).Append('\n');
            }
            if (t.lines == 0)
            {
                text.Append('\n');
            }
            string path = Write($"p{file++}.txt", text.ToString());
            var seen = Enumerable.Range(0, t.shards).SelectMany(s => ReadAll(path, s, t.shards)).Select(r => r.Features[0].Key).ToList();
            return seen.Order().SequenceEqual(Enumerable.Range(1, t.lines).Select(i => (ulong)i));
        }).QuickCheckThrowOnFailure();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_holdout_splits_every_shard_into_the_same_disjoint_parts_every_pass(bool gzip)
    {
        var text = new StringBuilder();
        for (int i = 0; i < 5000; i++)
        {
            text.Append(i % 2 == 0 ? "+1" : "-1").Append(' ').Append(i + 1).Append(":1\n");
        }
        string path = Write("holdout.txt" + (gzip ? ".gz" : ""), text.ToString(), gzip);
        var train = new LibSvmOptions { HoldoutFraction = 0.1, Bias = false };
        var heldOut = train with { ReadHeldOut = true };
        List<ulong> Keys(LibSvmOptions options) => Enumerable.Range(0, 3).SelectMany(s => ReadAll(path, s, 3, options)).Select(r => r.Features[0].Key).ToList();
        var trained = Keys(train);
        var validated = Keys(heldOut);
        Assert.Empty(trained.Intersect(validated));
        Assert.Equal(Enumerable.Range(1, 5000).Select(i => (ulong)i), trained.Concat(validated).Order());
        Assert.InRange(validated.Count, 400, 600);
        Assert.Equal(validated, Keys(heldOut)); // the same rows on every pass
        Assert.Equal(trained.Count, Enumerable.Range(0, 3).Sum(s => LibSvmReader.CountRows(path, s, 3, train)));
    }

    [Fact]
    public void Gzip_files_are_sharded_by_line_interleaving()
    {
        string text = string.Concat(Enumerable.Range(1, 10).Select(i => $"+1 {i}:1\n"));
        string path = Write("c.gz", text, gzip: true);
        var shard0 = ReadAll(path, 0, 3).Select(r => r.Features[0].Key).ToList();
        var shard2 = ReadAll(path, 2, 3).Select(r => r.Features[0].Key).ToList();
        Assert.Equal([1UL, 4, 7, 10], shard0);
        Assert.Equal([3UL, 6, 9], shard2);
    }

    [Theory]
    [InlineData("+1 1:1\n-1 2:1\nabc 1:1\n", 3, "label 'abc' is not a number")]
    [InlineData("+1 1:1\n-1 3 4:1\n", 2, "'3' is not index:value")]
    [InlineData("+1 1:1\n+1 0:1\n", 2, "feature index 0 is not allowed")]
    [InlineData("+1 1:1\n+1 -3:1\n", 2, "feature index '-3' is not a positive integer")]
    [InlineData("+1 1:1\n+1 2:nan\n", 2, "value 'nan' of feature 2 is not a finite number")]
    [InlineData("+1 1:1\nNaN 2:1\n", 2, "label 'NaN' is not a number")]
    public void Malformed_lines_name_file_and_line(string text, int line, string problem)
    {
        string path = Write("bad.txt", text);
        var ex = Assert.Throws<DataFormatException>(() => ReadAll(path));
        Assert.StartsWith($"{path}:{line}: {problem}", ex.Message);
        Assert.Contains("--skip-bad-lines", ex.Message);
    }

    [Fact]
    public void Line_numbers_are_right_in_later_shards()
    {
        string text = string.Concat(Enumerable.Range(1, 100).Select(i => i == 77 ? "+1 x:1\n" : $"+1 {i}:1\n"));
        string path = Write("late.txt", text);
        var errors = Enumerable.Range(0, 4).Select(s => Record.Exception(() => ReadAll(path, s, 4))).OfType<DataFormatException>().ToList();
        Assert.Single(errors);
        Assert.StartsWith($"{path}:77:", errors[0].Message);
    }

    [Fact]
    public void Bad_lines_can_be_counted_and_skipped()
    {
        string path = Write("skip.txt", "+1 1:1\nbad\n-1 2:1\n+1 0:1\n");
        using var reader = new LibSvmReader(path, 0, 1, new LibSvmOptions { SkipBadLines = true, Bias = false });
        var batch = new MiniBatch();
        Assert.True(reader.ReadBatch(batch, 10));
        Assert.Equal(2, batch.Rows);
        Assert.Equal(2, reader.BadLines);
        Assert.Equal([1UL, 2UL], batch.Keys.ToArray());
    }

    [Fact]
    public void Missing_and_empty_files_are_clear_errors()
    {
        Assert.Contains("does not exist", Assert.Throws<DataFormatException>(() => new LibSvmReader(Path.Combine(_dir, "nope"), 0, 1)).Message);
        Assert.Contains("is empty", Assert.Throws<DataFormatException>(() => new LibSvmReader(Write("e.txt", ""), 0, 1)).Message);
    }

    [Fact]
    public void A_shard_past_the_last_line_is_empty_not_an_error()
    {
        string path = Write("one.txt", "+1 1:1\n");
        Assert.Empty(ReadAll(path, 3, 4));
        Assert.Single(Enumerable.Range(0, 4).SelectMany(s => ReadAll(path, s, 4)));
    }

    [Fact]
    public void Minibatch_index_gives_sorted_unique_keys_and_slots_that_map_back()
    {
        var random = new Random(3);
        var batch = new MiniBatch();
        for (int round = 0; round < 20; round++)
        {
            batch.Clear();
            var expected = new List<ulong>();
            for (int r = 0; r < 50; r++)
            {
                batch.BeginRow(1);
                for (int j = 0; j < random.Next(1, 30); j++)
                {
                    ulong key = (ulong)random.Next(0, 200) * 0x10000000001UL;
                    batch.Add(key, 1);
                    expected.Add(key);
                }
                batch.EndRow();
            }
            batch.Index();
            Assert.Equal(expected.Distinct().Order(), batch.UniqueKeys.ToArray());
            for (int i = 0; i < batch.Nonzeros; i++)
            {
                Assert.Equal(batch.Keys[i], batch.UniqueKeys[batch.Slots[i]]);
            }
        }
    }
}
