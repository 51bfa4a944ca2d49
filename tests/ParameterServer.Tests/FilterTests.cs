using ParameterServer.Core.Codecs;
using ParameterServer.Extensions;
using ParameterServer.Server;

namespace ParameterServer.Tests;

/// <summary>The built-in push and pull filters, and the row memory pull filters compare against.</summary>
public sealed class FilterTests
{
    private static (float[] Values, bool[] Keep) Run(IPushFilter filter, ulong[] keys, float[] values, int width = 1)
    {
        var copy = values.ToArray();
        var keep = Enumerable.Repeat(true, keys.Length).ToArray();
        filter.Filter(keys, copy, width, keep);
        return (copy, keep);
    }

    [Fact]
    public void Significantly_modified_holds_small_changes_until_their_sum_passes_the_threshold()
    {
        var filter = new SignificantlyModifiedFilter(0.5f);
        ulong[] keys = [1, 2];
        var (values, keep) = Run(filter, keys, [0.3f, 0.9f]);
        Assert.Equal([false, true], keep);
        Assert.Equal(0.9f, values[1]);
        (values, keep) = Run(filter, keys, [0.3f, 0.1f]);
        Assert.Equal([true, false], keep);
        Assert.Equal(0.6f, values[0], 5); // both pushes of key 1, sent together: nothing lost
        (_, keep) = Run(filter, keys, [0.1f, 0.3f]);
        Assert.Equal([false, false], keep); // key 2 holds 0.4
    }

    [Fact]
    public void Random_skip_keeps_the_expected_push()
    {
        var filter = new RandomSkipFilter(0.25f, seed: 1);
        var keys = Enumerable.Range(0, 20_000).Select(i => (ulong)i).ToArray();
        var (values, keep) = Run(filter, keys, Enumerable.Repeat(1f, keys.Length).ToArray());
        double sent = keys.Select((_, i) => keep[i] ? values[i] : 0).Sum();
        Assert.InRange(keep.Count(k => !k) / (double)keys.Length, 0.23, 0.27);
        Assert.InRange(sent / keys.Length, 0.97, 1.03);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RandomSkipFilter(1f));
    }

    [Fact]
    public void Kkt_holds_back_small_gradients_of_zero_weights_and_sends_their_sum_later()
    {
        var filter = new KktFilter(1f);
        ulong[] keys = [10, 20, 30];
        // Without the weights of this push it cannot tell: everything is sent.
        var (_, keep) = Run(filter, keys, [0.5f, 0.5f, 0.5f]);
        Assert.All(keep, Assert.True);

        KktFilter.SetWeights([0f, 0.3f, 0f]);
        (_, keep) = Run(filter, keys, [0.6f, 0.2f, -2f]);
        Assert.Equal([false, true, true], keep); // key 20's weight is not zero, key 30's gradient exceeds lambda
        Assert.Equal([0.6f], filter.HeldBack(10, 1));

        // The weights are used once: this push goes out whole, held-back gradients are carried to the next filtered push.
        (_, keep) = Run(filter, keys, [0.1f, 0.1f, 0.1f]);
        Assert.All(keep, Assert.True);

        KktFilter.SetWeights([0f, 0f, 0f]);
        var (values, kept) = Run(filter, keys, [0.3f, 0.1f, 0.1f]);
        Assert.Equal([false, false, false], kept);
        Assert.Equal(0.9f, filter.HeldBack(10, 1)[0], 5);

        KktFilter.SetWeights([0f, 0f, 0f]);
        (values, kept) = Run(filter, keys, [0.2f, 0f, 0f]);
        Assert.Equal([true, false, false], kept);
        Assert.Equal(1.1f, values[0], 5); // the held-back 0.9 went with it
        Assert.Equal([0f], filter.HeldBack(10, 1));
    }

    [Fact]
    public void Push_filters_parse_with_a_clear_error()
    {
        Assert.IsType<SignificantlyModifiedFilter>(PushFilters.Parse("sigmod:0.1"));
        Assert.IsType<RandomSkipFilter>(PushFilters.Parse("random:0.5"));
        Assert.Null(PushFilters.Parse("none"));
        Assert.Contains("kkt needs the model's weights", Assert.Throws<ArgumentException>(() => PushFilters.Parse("kkt")).Message);
        Assert.Contains("unknown filter", Assert.Throws<ArgumentException>(() => PushFilters.Parse("nope")).Message);
    }

    [Fact]
    public void Significantly_modified_pull_filter_leaves_out_rows_within_the_threshold()
    {
        var filter = new SignificantlyModifiedPullFilter(0.5f);
        ulong[] keys = [1, 2, 3];
        float[] current = [1f, 1f, 2f, 2f, 3f, float.NaN];
        float[] lastSent = [1.4f, 0.6f, 2f, 2.6f, 3f, 3f];
        var keep = new bool[3];
        filter.Filter(keys, current, lastSent, 2, keep);
        Assert.Equal([false, true, true], keep); // row 2 moved by 0.6 in one value; NaN counts as moved
    }

    [Fact]
    public void Pull_filters_are_named_validly()
    {
        Assert.Contains("sigmod takes a threshold", Assert.Throws<ArgumentException>(() => new TableSpec("t") { PullFilter = "sigmod:-1" }.Validate()).Message);
        Assert.Contains("sigmod takes a threshold", Assert.Throws<ArgumentException>(() => new TableSpec("t") { PullFilter = "sigmod" }.Validate()).Message);
        new TableSpec("t") { PullFilter = "registered:on-servers" }.Validate(); // checked by the servers that run it
        Assert.IsType<SignificantlyModifiedPullFilter>(PullFilters.Parse("sigmod:0.01"));
        Assert.Null(PullFilters.Parse("none"));
        Assert.Throws<ArgumentException>(() => new ServerOptions().AddPullFilter("sigmod", _ => new SignificantlyModifiedPullFilter(1)));
    }

    [Fact]
    public void Row_memory_remembers_rows_up_to_its_bound()
    {
        var memory = new RowMemory(width: 2, capacityBytes: 4096);
        Assert.False(memory.TryGet(7, out _));
        Assert.True(memory.Set(7, [1f, 2f]));
        Assert.True(memory.Set(7, [3f, 4f]));
        Assert.True(memory.TryGet(7, out var row));
        Assert.Equal([3f, 4f], row.ToArray());
        int stored = 1;
        for (ulong key = 100; key < 1000; key++)
        {
            stored += memory.Set(key, [key, key]) ? 1 : 0;
        }
        Assert.InRange(memory.Bytes, 1, 4096);
        Assert.True(stored is > 50 and < 900, $"{stored} rows in 4 KiB");
        Assert.True(memory.Set(7, [5f, 6f])); // a key it holds can always be updated
        memory.Clear();
        Assert.False(memory.TryGet(7, out _));
        Assert.Equal(0, memory.Count);
    }
}
