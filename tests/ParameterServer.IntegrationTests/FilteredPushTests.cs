using ParameterServer.Client;
using ParameterServer.Extensions;
using ParameterServer.Protocol;

namespace ParameterServer.IntegrationTests;

/// <summary>Filtered pushes with key caching and encoding, against the same pushes sent plain (real TCP, in this process).</summary>
public sealed class FilteredPushTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    /// <summary>Drops a different third of the keys at every call (as KKT does while weights change).</summary>
    private sealed class EveryThirdFilter : IPushFilter
    {
        private int _call;

        public void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep)
        {
            _call++;
            for (int i = 0; i < keys.Length; i++)
            {
                keep[i] = (keys[i] + (ulong)_call) % 3 != 0;
            }
        }
    }

    [Fact]
    public async Task A_filtered_push_names_its_unfiltered_cached_keys_and_applies_exactly_the_kept_rows()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        // Adam: applying a filtered row, even as a zero step, would move it (momentum), so only the kept rows may arrive.
        var plain = await client.DeclareTableAsync(new TableSpec("plain", 2) { Handler = "adam" });
        var coded = await client.DeclareTableAsync(new TableSpec("coded", 2) { Handler = "adam", KeyCaching = true, Compression = "zero+lz" });
        // fp16 is lossy for the worker, but its forwards to replicas must not be: re-encoding fp16 values is exact.
        var halves = await client.DeclareTableAsync(new TableSpec("halves", 2) { Handler = "adam", KeyCaching = true, Compression = "zero+fp16" });
        plain.PushFilter = new EveryThirdFilter();
        coded.PushFilter = new EveryThirdFilter();
        halves.PushFilter = new EveryThirdFilter();
        var random = new Random(5);
        // Sparse keys spread over the ring, and a contiguous run (a KeyRange slice until filtered).
        var keys = Enumerable.Range(0, 400).Select(_ => (ulong)random.NextInt64(1, long.MaxValue)).Concat(Enumerable.Range(1000, 64).Select(k => (ulong)k)).Distinct().Order().ToArray();
        var pulled = new float[keys.Length * 2];
        long plainBytes = 0, codedBytes = 0;
        for (int step = 0; step < 6; step++)
        {
            var gradient = Enumerable.Range(0, keys.Length * 2).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            long before = PushBytes(client);
            await client.WaitAsync(plain.Pull(keys, pulled)).WaitAsync(Limit);
            await client.WaitAsync(plain.Push(keys, gradient)).WaitAsync(Limit);
            long middle = PushBytes(client);
            await client.WaitAsync(coded.Pull(keys, pulled)).WaitAsync(Limit); // primes the servers' caches with the batch's keys
            await client.WaitAsync(coded.Push(keys, gradient)).WaitAsync(Limit);
            plainBytes += middle - before;
            codedBytes += PushBytes(client) - middle;
            await client.WaitAsync(halves.Pull(keys, pulled)).WaitAsync(Limit);
            await client.WaitAsync(halves.Push(keys, gradient)).WaitAsync(Limit);
        }
        // Replication 2 on two servers: each holds every row, as primary or as replica of forwards (packed keys, encoded values).
        foreach (var table in new[] { plain, coded, halves })
        {
            var first = new float[keys.Length * 2];
            var second = new float[keys.Length * 2];
            cluster.Servers[0].TableStoreOf(table.Info.Id)!.Read(Protocol.KeyList.Of(keys), first);
            cluster.Servers[1].TableStoreOf(table.Info.Id)!.Read(Protocol.KeyList.Of(keys), second);
            Assert.Equal(first, second);
        }
        var fromPlain = new float[keys.Length * 2];
        var fromCoded = new float[keys.Length * 2];
        await client.WaitAsync(plain.Pull(keys, fromPlain)).WaitAsync(Limit);
        await client.WaitAsync(coded.Pull(keys, fromCoded)).WaitAsync(Limit);
        Assert.Equal(fromPlain, fromCoded); // bit for bit: the same rows applied, the same values
        Assert.Contains(fromPlain, v => v != 0);
        Assert.True(client.FilteredKeys > 0);
        // Width 2: a plain row is 8 key bytes + 8 value bytes. Random values do not compress; the kept keys cost nothing
        // but a signature and a bit per unfiltered key, so at most a little over half the bytes remain.
        Assert.True(codedBytes < plainBytes * 0.6, $"filtered pushes: {codedBytes} bytes with cached keys and a mask, {plainBytes} plain");
    }

    private static long PushBytes(PsClient client) => client.TrafficMeter.Snapshot().Get(nameof(MessageType.Push), Transport.PeerTraffic.BytesOut);
}
