using System.IO.Compression;
using System.Text;
using ICSharpCode.SharpZipLib.BZip2;
using ParameterServer.Apps.Sketch;
using ParameterServer.Apps.Sketch.Sketching;
using ParameterServer.Apps.Sketch.Streams;

namespace ParameterServer.Tests.Sketch;

/// <summary>The CountMin sketch, its shapes and layouts, the streams it counts, and its files.</summary>
public sealed class SketchTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-sketch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(1e-4, 0.01, 27_183, 5)]
    [InlineData(0.01, 0.001, 272, 7)]
    [InlineData(0.5, 0.5, 6, 1)]
    public void The_shape_follows_the_error_bounds(double epsilon, double delta, int width, int depth)
    {
        var shape = SketchShape.FromBounds(epsilon, delta);
        Assert.Equal(width, shape.Width);
        Assert.Equal(depth, shape.Depth);
        Assert.Equal(width, shape.Keys); // rows layout: a key per column, its row the column's counters
        var blocked = SketchShape.FromBounds(epsilon, delta, SketchLayout.Blocked);
        Assert.True(blocked.Counters >= width * depth && blocked.Counters < (width * depth) + 8);
    }

    [Theory]
    [InlineData(0, 0.01)]
    [InlineData(1, 0.01)]
    [InlineData(0.01, 0)]
    [InlineData(0.01, 1.5)]
    [InlineData(double.NaN, 0.1)]
    public void Bounds_outside_0_1_are_refused(double epsilon, double delta)
    {
        var e = Assert.Throws<ArgumentException>(() => SketchShape.FromBounds(epsilon, delta));
        Assert.Contains("--epsilon and --delta must be in (0, 1)", e.Message);
    }

    [Fact]
    public void The_blocked_layout_refuses_a_depth_beyond_its_block()
    {
        var e = Assert.Throws<ArgumentException>(() => SketchShape.FromBounds(0.01, 1e-6, SketchLayout.Blocked));
        Assert.Contains("--layout rows", e.Message);
    }

    [Theory]
    [InlineData(SketchLayout.Rows, false)]
    [InlineData(SketchLayout.Blocked, false)]
    [InlineData(SketchLayout.Rows, true)]
    [InlineData(SketchLayout.Blocked, true)]
    public void Estimates_never_fall_below_the_true_counts_and_mostly_meet_the_bound(SketchLayout layout, bool conservative)
    {
        const double Epsilon = 0.002, Delta = 0.01;
        var sketch = new CountMinSketch(SketchShape.FromBounds(Epsilon, Delta, layout));
        var zipf = new ZipfStream(20_000, 1.0, 3);
        var exact = new Dictionary<long, long>();
        const int N = 400_000;
        for (int i = 0; i < N; i++)
        {
            long id = zipf.Next();
            exact[id] = exact.GetValueOrDefault(id) + 1;
            long estimate = conservative ? sketch.AddConservative(Items.HashOfId((ulong)id)) : sketch.Add(Items.HashOfId((ulong)id));
            Assert.Equal(estimate, sketch.Estimate(Items.HashOfId((ulong)id))); // what Add returns is the estimate
        }
        int within = 0;
        foreach (var (id, count) in exact)
        {
            long estimate = sketch.Estimate(Items.HashOfId((ulong)id));
            Assert.True(estimate >= count, $"item {id}: estimate {estimate} < true {count}");
            within += estimate - count <= Epsilon * N ? 1 : 0;
        }
        Assert.True(within >= (1 - Delta) * exact.Count, $"{within} of {exact.Count} items within epsilon x N");
        if (!conservative)
        {
            Assert.Equal(N, sketch.Total());
        }
    }

    [Fact]
    public void Conservative_update_is_never_looser_than_the_plain_one()
    {
        var shape = SketchShape.FromBounds(0.01, 0.01);
        var plain = new CountMinSketch(shape);
        var tight = new CountMinSketch(shape);
        var zipf = new ZipfStream(5_000, 1.2, 9);
        for (int i = 0; i < 100_000; i++)
        {
            ulong hash = Items.HashOfId((ulong)zipf.Next());
            plain.Add(hash);
            tight.AddConservative(hash);
        }
        long looser = 0, tighter = 0;
        for (ulong id = 1; id <= 5_000; id++)
        {
            long a = plain.Estimate(Items.HashOfId(id)), b = tight.Estimate(Items.HashOfId(id));
            Assert.True(b <= a);
            looser += a;
            tighter += b;
        }
        Assert.True(tighter < looser);
    }

    [Fact]
    public void Sketches_of_two_halves_merge_into_the_sketch_of_the_whole()
    {
        var shape = SketchShape.FromBounds(0.001, 0.01, SketchLayout.Blocked);
        var whole = new CountMinSketch(shape);
        var first = new CountMinSketch(shape);
        var second = new CountMinSketch(shape);
        var zipf = new ZipfStream(100_000, 1.1, 5);
        for (int i = 0; i < 200_000; i++)
        {
            ulong hash = Items.HashOfId((ulong)zipf.Next());
            whole.Add(hash);
            (i % 2 == 0 ? first : second).Add(hash, 1);
        }
        first.Merge(second);
        Assert.Equal(whole.Counters, first.Counters);
        Assert.Throws<ArgumentException>(() => first.Merge(new CountMinSketch(SketchShape.FromBounds(0.001, 0.01))));
    }

    [Fact]
    public void Zipf_ids_follow_the_power_law()
    {
        var zipf = new ZipfStream(1_000, 1.5, 11);
        var counts = new long[1_001];
        const int N = 1_000_000;
        for (int i = 0; i < N; i++)
        {
            long id = zipf.Next();
            Assert.InRange(id, 1, 1_000);
            counts[id]++;
        }
        // P(1) / P(k) = k^s.
        Assert.InRange(counts[1] / (double)counts[2], Math.Pow(2, 1.5) * 0.95, Math.Pow(2, 1.5) * 1.05);
        Assert.InRange(counts[1] / (double)counts[10], Math.Pow(10, 1.5) * 0.9, Math.Pow(10, 1.5) * 1.1);
        double harmonic = Enumerable.Range(1, 1_000).Sum(k => Math.Pow(k, -1.5));
        Assert.InRange(counts[1] / (double)N, 0.98 / harmonic, 1.02 / harmonic);
    }

    [Fact]
    public void Text_split_into_byte_ranges_yields_every_token_exactly_once()
    {
        var random = new Random(4);
        var words = Enumerable.Range(0, 300).Select(i => new string((char)('a' + (i % 26)), 1 + (i % 7)) + i).ToArray();
        var text = new StringBuilder();
        var expected = new Dictionary<string, int>();
        for (int i = 0; i < 50_000; i++)
        {
            string w = words[random.Next(words.Length)];
            expected[w] = expected.GetValueOrDefault(w) + 1;
            text.Append(w).Append(random.Next(5) switch { 0 => "\n", 1 => "\t ", 2 => "  ", _ => " " });
        }
        string path = Path.Combine(_dir, "stream.txt");
        File.WriteAllText(path, text.ToString());
        foreach (int workers in new[] { 1, 3, 7 })
        {
            var seen = new Dictionary<string, int>();
            for (int rank = 0; rank < workers; rank++)
            {
                using var items = TextItems.Open([path], rank, workers, 1000);
                var hashes = new ulong[1000];
                int n;
                while ((n = items.Read(hashes)) > 0)
                {
                    for (int i = 0; i < n; i++)
                    {
                        string token = Encoding.UTF8.GetString(items.Token(i));
                        Assert.Equal(Items.Hash(token), hashes[i]);
                        seen[token] = seen.GetValueOrDefault(token) + 1;
                    }
                }
            }
            Assert.Equal(expected.OrderBy(e => e.Key), seen.OrderBy(e => e.Key));
        }
    }

    [Fact]
    public void Gzip_and_bzip2_files_give_the_same_tokens_and_binary_garbage_is_counted_not_refused()
    {
        byte[] garbage = [0x00, 0xFF, 0xFE, (byte)'x', (byte)' ', 0x80, 0x01];
        byte[] bytes = [.. Encoding.UTF8.GetBytes("the cat saw the dog\nthe end "), .. garbage];
        string plain = Path.Combine(_dir, "a.txt"), gz = Path.Combine(_dir, "a.txt.gz"), bz2 = Path.Combine(_dir, "a.txt.bz2");
        File.WriteAllBytes(plain, bytes);
        using (var file = File.Create(gz))
        using (var zip = new GZipStream(file, CompressionLevel.Fastest))
        {
            zip.Write(bytes);
        }
        using (var file = File.Create(bz2))
        using (var zip = new BZip2OutputStream(file))
        {
            zip.Write(bytes);
        }
        List<string> Tokens(string path)
        {
            using var items = TextItems.Open([path], 0, 1, 64);
            var hashes = new ulong[64];
            var tokens = new List<string>();
            int n;
            while ((n = items.Read(hashes)) > 0)
            {
                tokens.AddRange(Enumerable.Range(0, n).Select(i => Convert.ToHexString(items.Token(i))));
            }
            return tokens;
        }
        var expected = Tokens(plain);
        Assert.Equal(9, expected.Count); // the cat saw the dog the end, and the two garbage tokens either side of the space
        Assert.Equal(expected, Tokens(gz));
        Assert.Equal(expected, Tokens(bz2));
        var missing = Assert.Throws<FileNotFoundException>(() => TextItems.Open([Path.Combine(_dir, "nope.txt")], 0, 1, 64));
        Assert.Contains("nope.txt", missing.Message);
    }

    [Fact]
    public void Candidate_names_round_trip_and_long_ones_are_cut_at_a_character()
    {
        Span<long> words = stackalloc long[HeavyHitters.NameWords];
        HeavyHitters.EncodeName("héllo", words);
        Assert.Equal("héllo", HeavyHitters.DecodeName(words));
        string longName = new string('é', 40); // 80 bytes of UTF-8
        HeavyHitters.EncodeName(longName, words);
        Assert.Equal(new string('é', 32), HeavyHitters.DecodeName(words));
    }

    [Fact]
    public void The_candidate_threshold_names_every_item_of_a_small_stream_and_caps_the_window_of_a_large_one()
    {
        var candidates = new HeavyHitters();
        var keys = new List<ulong>();
        var rows = new List<long>();
        for (ulong hash = 1; hash <= 3; hash++)
        {
            Assert.True(1 >= candidates.Threshold && !candidates.Offered(hash));
            candidates.Offer(hash, 1, "x"u8);
        }
        Assert.Equal(3, candidates.TakeWindow(keys, rows)); // seen once each, still named
        Assert.Equal("x", HeavyHitters.DecodeName(rows.ToArray().AsSpan(1, HeavyHitters.NameWords)));
        for (ulong hash = 1; hash <= 200_000; hash++)
        {
            long estimate = (long)(hash % 100) + 1;
            if (estimate >= candidates.Threshold && !candidates.Offered(hash))
            {
                candidates.Offer(hash, estimate, "y"u8);
            }
        }
        Assert.InRange(candidates.Count, HeavyHitters.WindowCandidates / 2, HeavyHitters.WindowCandidates + 100);
        Assert.True(candidates.Threshold > 1);
    }

    [Fact]
    public void A_sketch_file_reads_back_exactly_and_a_truncated_one_is_refused()
    {
        var sketch = new CountMinSketch(SketchShape.FromBounds(0.01, 0.05, SketchLayout.Blocked));
        for (ulong i = 0; i < 1000; i++)
        {
            sketch.Add(Items.HashOfId(i), (long)i << 33);
        }
        string path = Path.Combine(_dir, "s.sketch");
        SketchFile.Write(path, sketch);
        var back = SketchFile.Read(path);
        Assert.Equal(sketch.Shape, back.Shape);
        Assert.Equal(sketch.Counters, back.Counters);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^8]);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => SketchFile.Read(path)).Message);
    }

    [Fact]
    public void Options_are_checked_naming_the_option()
    {
        Assert.Contains("--data", Assert.Throws<ArgumentException>(() => new SketchOptions().Validate()).Message);
        Assert.Contains("not both", Assert.Throws<ArgumentException>(() => new SketchOptions { Synthetic = true, Files = ["x"] }.Validate()).Message);
        Assert.Contains("--epsilon", Assert.Throws<ArgumentException>(() => new SketchOptions { Synthetic = true, Epsilon = 2 }.Validate()).Message);
    }
}
