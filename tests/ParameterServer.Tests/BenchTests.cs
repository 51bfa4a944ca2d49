using System.Text.Json;
using ParameterServer.Bench;

namespace ParameterServer.Tests;

/// <summary>The pieces of `pserver bench kv` that need no processes: sizes, the latency histogram, the JSON line.</summary>
public class BenchTests
{
    [Theory]
    [InlineData("4B", 4)]
    [InlineData("4", 4)]
    [InlineData("64KB", 64 << 10)]
    [InlineData("1MB", 1 << 20)]
    [InlineData("16MiB", 16 << 20)]
    [InlineData(" 2k ", 2048)]
    public void Sizes_parse_with_binary_units(string text, int bytes)
    {
        Assert.Equal(bytes, ByteSizes.Parse(text));
        Assert.Equal(bytes, ByteSizes.Parse(ByteSizes.Format(bytes)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("KB")]
    [InlineData("3XB")]
    [InlineData("0")]
    [InlineData("4GB")]
    public void Bad_sizes_are_refused(string text) => Assert.Throws<ArgumentException>(() => ByteSizes.Parse(text));

    [Fact]
    public void Histogram_buckets_are_contiguous_and_at_most_3_percent_wide()
    {
        int previous = -1;
        for (long ns = 0; ns < 1 << 22; ns += 1 + (ns >> 7))
        {
            int index = LatencyHistogram.IndexOf(ns);
            Assert.True(index == previous || index == previous + 1, $"{ns} ns jumped from bucket {previous} to {index}");
            previous = index;
            Assert.InRange(LatencyHistogram.MidpointOf(index), ns * 0.984 - 1, ns * 1.016 + 1);
        }
    }

    [Fact]
    public void Merged_histograms_give_quantiles_of_all_samples()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        for (int i = 1; i <= 1000; i++)
        {
            (i % 2 == 0 ? a : b).Record(i * 1000L); // 1..1000 us
        }
        var merged = new LatencyHistogram();
        merged.Add(a.ToPairs().Select(p => ((int)p[0], p[1])));
        merged.Add(b.ToPairs().Select(p => ((int)p[0], p[1])));
        Assert.Equal(1000, merged.Count);
        Assert.InRange(merged.QuantileMicros(0.5), 500 * 0.98, 500 * 1.02);
        Assert.InRange(merged.QuantileMicros(0.99), 990 * 0.98, 990 * 1.02);
    }

    [Fact]
    public void Json_line_has_exactly_the_fields_of_the_issue()
    {
        var r = new KvResult(new BenchCase(BenchOp.PushPull, 1 << 20, 8, 1), 2, 2, 3.25, 1550, 120.5, 800);
        using var doc = JsonDocument.Parse(KvBenchReport.JsonLine(r, 4.0));
        string[] names = doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(["bench", "op", "size_bytes", "window", "servers", "workers", "gbps", "requests_per_sec", "p50_us", "p99_us", "limit_gbps", "fraction_of_limit"], names);
        Assert.Equal("pushpull", doc.RootElement.GetProperty("op").GetString());
        Assert.Equal(0.8125, doc.RootElement.GetProperty("fraction_of_limit").GetDouble(), 4);
    }

    [Fact]
    public void Plan_lists_sizes_times_windows_times_ops_then_round_trips()
    {
        var plan = new KvBenchPlan { Sizes = [4096, 1 << 20], Windows = [1, 8], RttSizes = [4], RttWindows = [1, 32] };
        var cases = plan.Cases().ToList();
        Assert.Equal(2 * 2 * 3 + 2, cases.Count);
        Assert.Equal(new BenchCase(BenchOp.Rtt, 4, 32, 1), cases[^1]);
        Assert.Throws<ArgumentException>(() => (plan with { KeysPerRequest = 3 }).Validate()); // 4096 bytes are not 3 whole rows
        Assert.Throws<ArgumentException>(() => (plan with { Windows = [0] }).Validate());
    }
}
