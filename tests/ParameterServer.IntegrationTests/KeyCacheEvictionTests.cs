using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>Key caching with server caches far smaller than the key lists in use: evictions, misses and resends (real TCP, in this process).</summary>
public sealed class KeyCacheEvictionTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Evicted_key_lists_are_answered_with_a_miss_resent_in_full_and_give_the_same_values()
    {
        // 2 KiB per worker connection holds two lists of 100 keys; the calls cycle through eight.
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1, options => options.KeyCacheBytes = 2048);
        await using var _ = cluster;
        await using var client = clients[0];
        var plain = await client.DeclareTableAsync(new TableSpec("plain", 2) { Handler = "adagrad" });
        var cached = await client.DeclareTableAsync(new TableSpec("cached", 2) { Handler = "adagrad", KeyCaching = true, Compression = "zero+lz" });
        var random = new Random(9);
        var lists = Enumerable.Range(0, 8)
            .Select(_ => Enumerable.Range(0, 200).Select(_ => (ulong)random.NextInt64(1, long.MaxValue)).Distinct().Order().ToArray())
            .ToArray();
        var fromPlain = new float[400];
        var fromCached = new float[400];
        for (int pass = 0; pass < 4; pass++)
        {
            foreach (var keys in lists)
            {
                var gradient = Enumerable.Range(0, keys.Length * 2).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
                await client.WaitAsync(plain.Push(keys, gradient)).WaitAsync(Limit);
                await client.WaitAsync(cached.Push(keys, gradient)).WaitAsync(Limit);
                await client.WaitAsync(plain.Pull(keys, fromPlain)).WaitAsync(Limit);
                await client.WaitAsync(cached.Pull(keys, fromCached)).WaitAsync(Limit);
                Assert.Equal(fromPlain, fromCached); // bit for bit, misses or not
            }
        }
        Assert.True(client.KeyCacheMisses > 0, "the workers' signatures must have missed evicted lists");
        long evictions = 0, bytes = 0;
        foreach (var server in cluster.Servers)
        {
            var stats = JsonDocument.Parse(server.StatsJson()).RootElement.GetProperty("key_cache");
            evictions += stats.GetProperty("evictions").GetInt64();
            bytes = Math.Max(bytes, stats.GetProperty("bytes").GetInt64());
        }
        Assert.True(evictions > 0);
        Assert.True(bytes <= 2048, $"a server's key cache holds {bytes} bytes, over its 2048");
    }
}
