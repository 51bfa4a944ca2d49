using ParameterServer.Client;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server;
using ParameterServer.Transport;

namespace ParameterServer.IntegrationTests;

/// <summary>Pull filters: servers leave rows out of pull answers, workers fill them from what they were sent (real TCP, in this process).</summary>
public sealed class PullFilterTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    /// <summary>Sparse keys spread over the ring, and a contiguous run (KeyRange slices).</summary>
    private static ulong[] Keys(Random random) =>
        Enumerable.Range(0, 300).Select(_ => (ulong)random.NextInt64(1, long.MaxValue)).Concat(Enumerable.Range(1000, 64).Select(k => (ulong)k)).Distinct().Order().ToArray();

    [Fact]
    public async Task Significantly_modified_answers_keep_every_row_within_the_threshold_and_send_the_ones_that_moved()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        await using var _ = cluster;
        await using var first = clients[0];
        await using var second = clients[1];
        const float threshold = 0.5f;
        var filtered = await first.DeclareTableAsync(new TableSpec("filtered", 2) { PullFilter = "sigmod:0.5" });
        var coded = await first.DeclareTableAsync(new TableSpec("coded", 2) { PullFilter = "sigmod:0.5", KeyCaching = true, Compression = "zero+lz" });
        var plain = await first.DeclareTableAsync(new TableSpec("plain", 2));
        var random = new Random(11);
        var keys = Keys(random);
        int n = keys.Length;
        var truth = new float[n * 2];
        var got = new float[n * 2];
        var gotCoded = new float[n * 2];
        long filteredBytes = 0, plainBytes = 0;
        int skippedRows = 0;
        for (int step = 0; step < 8; step++)
        {
            // Half the rows move a little (left out until their drift passes the threshold), half move a lot (always sent).
            var big = new bool[n];
            var delta = new float[n * 2];
            for (int i = 0; i < n; i++)
            {
                big[i] = step == 0 || random.Next(2) == 0;
                for (int j = 0; j < 2; j++)
                {
                    float magnitude = big[i] ? 1.5f + random.NextSingle() : random.NextSingle() * 0.2f;
                    delta[(i * 2) + j] = random.Next(2) == 0 ? magnitude : -magnitude;
                }
            }
            await first.WaitAsync(filtered.Push(keys, delta)).WaitAsync(Limit);
            await first.WaitAsync(coded.Push(keys, delta)).WaitAsync(Limit);
            await first.WaitAsync(plain.Push(keys, delta)).WaitAsync(Limit);
            long before = ResponseBytes(first);
            await first.WaitAsync(plain.Pull(keys, truth)).WaitAsync(Limit);
            long middle = ResponseBytes(first);
            await first.WaitAsync(filtered.Pull(keys, got)).WaitAsync(Limit);
            plainBytes += middle - before;
            filteredBytes += ResponseBytes(first) - middle;
            await first.WaitAsync(coded.Pull(keys, gotCoded)).WaitAsync(Limit);
            Assert.Equal(got, gotCoded); // the same rows left out, whatever the encoding of the rest
            for (int i = 0; i < n; i++)
            {
                var row = got.AsSpan(i * 2, 2);
                var exact = truth.AsSpan(i * 2, 2);
                if (big[i])
                {
                    Assert.True(row.SequenceEqual(exact), $"step {step}: row {keys[i]} moved by more than the threshold, so it must be sent exactly");
                    continue;
                }
                skippedRows += row.SequenceEqual(exact) ? 0 : 1;
                for (int j = 0; j < 2; j++)
                {
                    Assert.True(MathF.Abs(row[j] - exact[j]) <= threshold, $"step {step}: row {keys[i]} value {j} is {row[j]}, the server holds {exact[j]}");
                }
            }
        }
        Assert.True(skippedRows > n, $"{skippedRows} rows were left out over 7 steps");
        Assert.True(filteredBytes < plainBytes * 0.8, $"filtered answers: {filteredBytes} bytes, plain {plainBytes}");
        Assert.Equal(0, first.PullRefreshes);
        Assert.True(cluster.Servers.Sum(s => PullRowsLeftOut(s)) > 0);

        // Another worker's connection was sent nothing yet: it gets every row as the servers hold it.
        var other = await second.DeclareTableAsync(new TableSpec("filtered", 2) { PullFilter = "sigmod:0.5" });
        var fresh = new float[n * 2];
        await second.WaitAsync(other.Pull(keys, fresh)).WaitAsync(Limit);
        Assert.Equal(truth, fresh);
    }

    [Fact]
    public async Task A_worker_that_lost_its_rows_asks_for_them_again_and_gets_exact_values()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var table = await client.DeclareTableAsync(new TableSpec("t", 1) { PullFilter = "sigmod:100", KeyCaching = true });
        var keys = Keys(new Random(3));
        var values = keys.Select(k => (float)(k % 97)).ToArray();
        var got = new float[keys.Length];
        await client.WaitAsync(table.Push(keys, values)).WaitAsync(Limit);
        await client.WaitAsync(table.Pull(keys, got)).WaitAsync(Limit);
        Assert.Equal(values, got);

        // The servers would leave every row out now (nothing moved by 100): without its rows the worker must ask again.
        client.ForgetPulledRows(table.Info.Id);
        await client.WaitAsync(table.Push(keys, values)).WaitAsync(Limit);
        Array.Clear(got);
        await client.WaitAsync(table.Pull(keys, got)).WaitAsync(Limit);
        Assert.Equal(values.Select(v => v * 2), got);
        Assert.Equal(2, client.PullRefreshes); // one refresh per server

        // The refresh answers were remembered on both sides: the next pull is filtered again, with no refresh.
        await client.WaitAsync(table.Push(keys, values)).WaitAsync(Limit);
        await client.WaitAsync(table.Pull(keys, got)).WaitAsync(Limit);
        Assert.Equal(values.Select(v => v * 2), got); // moved by less than 100: left out, the worker keeps what it was sent
        Assert.Equal(2, client.PullRefreshes);
    }

    /// <summary>Leaves out odd keys whenever it may: a user-defined filter that servers run.</summary>
    private sealed class EvenKeysOnly : IPullFilter
    {
        public void Filter(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> current, ReadOnlySpan<float> lastSent, int width, Span<bool> keep)
        {
            for (int i = 0; i < keys.Length; i++)
            {
                keep[i] = keys[i] % 2 == 0;
            }
        }
    }

    [Fact]
    public async Task Servers_run_a_registered_user_filter_and_the_scheduler_refuses_tables_naming_an_unknown_one()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1, options => options.AddPullFilter("even", _ => new EvenKeysOnly()));
        await using var _ = cluster;
        await using var client = clients[0];
        var table = await client.DeclareTableAsync(new TableSpec("even", 1) { PullFilter = "even" });
        var keys = Keys(new Random(4));
        var ones = keys.Select(_ => 1f).ToArray();
        var got = new float[keys.Length];
        await client.WaitAsync(table.Push(keys, ones)).WaitAsync(Limit);
        await client.WaitAsync(table.Pull(keys, got)).WaitAsync(Limit);
        Assert.All(got, v => Assert.Equal(1f, v)); // rows never sent are sent, whatever the filter says
        await client.WaitAsync(table.Push(keys, ones)).WaitAsync(Limit);
        await client.WaitAsync(table.Pull(keys, got)).WaitAsync(Limit);
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal(keys[i] % 2 == 0 ? 2f : 1f, got[i]);
        }

        // Refused when declared (servers tell the scheduler which filters they run), not at the first pull.
        var error = await Assert.ThrowsAsync<PsException>(() => client.DeclareTableAsync(new TableSpec("unknown", 1) { PullFilter = "nosuch:1" }).WaitAsync(Limit));
        Assert.Contains("pull filter 'nosuch' of table 'unknown' is not registered on", error.Message);
    }

    private static long ResponseBytes(PsClient client) => client.TrafficMeter.Snapshot().Get(nameof(MessageType.Response), PeerTraffic.BytesIn);

    private static long PullRowsLeftOut(ServerNode server) =>
        System.Text.Json.JsonDocument.Parse(server.StatsJson()).RootElement.GetProperty("pull_filter").GetProperty("rows_left_out").GetInt64();
}
