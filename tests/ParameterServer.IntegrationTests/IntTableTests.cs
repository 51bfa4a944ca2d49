namespace ParameterServer.IntegrationTests;

/// <summary>int32 and int64 tables end to end on real servers (in-process, real TCP): exact integer sums, sync rounds, lossless codecs, and type errors.</summary>
public sealed class IntTableTests
{
    private const int Big = 16_777_217; // 2^24 + 1: not a float32; a float sum would lose the 1

    [Fact]
    public async Task Counts_add_up_exactly_beyond_float_precision_on_two_servers()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        await using var _ = cluster;
        var tables = await Task.WhenAll(clients.Select(c => c.DeclareTableAsync(new TableSpec("counts", 3) { ElementType = ElementType.Int32, Compression = "zero+lz" })));
        ulong[] keys = [1, 7, 1_000_003, 99_999_999_999];
        await Task.WhenAll(tables.Select((table, w) => Task.Run(async () =>
        {
            var values = new int[keys.Length * 3];
            for (int round = 0; round < 50; round++)
            {
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = round == 0 ? Big : (i % 3) - 1; // -1, 0, +1 per column after the first round
                }
                await clients[w].WaitAsync(table.PushInt32(keys, values));
            }
        })));
        var pulled = new int[keys.Length * 3];
        await clients[0].WaitAsync(tables[0].PullInt32(keys, pulled));
        for (int i = 0; i < pulled.Length; i++)
        {
            Assert.Equal((2 * Big) + (2 * 49 * ((i % 3) - 1)), pulled[i]);
        }
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_sync_int_table_sums_every_workers_round_exactly()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        await using var _ = cluster;
        var tables = await Task.WhenAll(clients.Select(c => c.DeclareTableAsync(new TableSpec("rounds", 2) { ElementType = ElementType.Int32, Mode = UpdateMode.Sync, DenseSize = 10, BlockKeys = 2 })));
        await Task.WhenAll(tables.Select((table, w) => Task.Run(async () =>
        {
            var values = Enumerable.Range(0, 20).Select(i => Big + i + w).ToArray();
            for (int round = 0; round < 5; round++)
            {
                await clients[w].WaitAsync(table.PushRangeInt32(0, values));
            }
        })));
        var pulled = new int[20];
        await clients[1].WaitAsync(tables[1].PullRangeInt32(0, pulled));
        Assert.Equal(Enumerable.Range(0, 20).Select(i => 5 * ((2 * (Big + i)) + 1)), pulled);
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Int64_counts_pass_two_to_the_32_exactly_and_survive_a_server_loss()
    {
        // 3 servers, 2 copies of every range: after one server goes, the other copies hold every count.
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 2);
        await using var _ = cluster;
        const long Huge = (1L << 40) + 3; // neither a float32 nor an int32: any 4-byte or float path would lose it
        var async = await Task.WhenAll(clients.Select(c => c.DeclareTableAsync(new TableSpec("big", 3) { ElementType = ElementType.Int64, Compression = "zero+lz" })));
        var sync = await Task.WhenAll(clients.Select(c => c.DeclareTableAsync(new TableSpec("big-rounds", 2) { ElementType = ElementType.Int64, Mode = UpdateMode.Sync, DenseSize = 64, BlockKeys = 4 })));
        ulong[] keys = Enumerable.Range(0, 40).Select(i => (ulong)i * 7_919).ToArray();
        async Task PushAsync(int w, int rounds)
        {
            var values = new long[keys.Length * 3];
            var ranged = new long[64 * 2];
            for (int round = 0; round < rounds; round++)
            {
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = i % 3 == 0 ? Huge : (i % 3) - 2; // Huge, -1, 0 per row
                }
                for (int i = 0; i < ranged.Length; i++)
                {
                    ranged[i] = Huge + i + w;
                }
                await clients[w].WaitAsync(async[w].PushInt64(keys, values));
                await clients[w].WaitAsync(sync[w].PushRangeInt64(0, ranged));
            }
        }
        async Task CheckAsync(int rounds)
        {
            var pulled = new long[keys.Length * 3];
            await clients[0].WaitAsync(async[0].PullInt64(keys, pulled));
            for (int i = 0; i < pulled.Length; i++)
            {
                Assert.Equal(2L * rounds * (i % 3 == 0 ? Huge : (i % 3) - 2), pulled[i]);
            }
            var ranged = new long[64 * 2];
            await clients[1].WaitAsync(sync[1].PullRangeInt64(0, ranged));
            Assert.Equal(Enumerable.Range(0, ranged.Length).Select(i => rounds * ((2 * (Huge + i)) + 1)), ranged);
        }
        await Task.WhenAll(Task.Run(() => PushAsync(0, 10)), Task.Run(() => PushAsync(1, 10)));
        await CheckAsync(10);
        await cluster.Servers[0].DisposeAsync();
        await Task.WhenAll(Task.Run(() => PushAsync(0, 5)), Task.Run(() => PushAsync(1, 5)));
        await CheckAsync(15);
        var wrong = Assert.Throws<PsException>(() => async[0].PushInt32([1UL], [1]));
        Assert.Contains("holds int64 values: call PushInt64 / PullInt64", wrong.Message);
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_max_table_keeps_the_largest_value_and_the_same_push_twice_changes_nothing()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        await using var _ = cluster;
        var tables = await Task.WhenAll(clients.Select(c => c.DeclareTableAsync(new TableSpec("registers", 2) { ElementType = ElementType.Int64, Handler = "max" })));
        ulong[] keys = [3, 1UL << 40];
        await clients[0].WaitAsync(tables[0].PushInt64(keys, [5, long.MinValue, -7, 1L << 50]));
        await clients[1].WaitAsync(tables[1].PushInt64(keys, [2, 9, -7, 1L << 50])); // the same value again: unchanged
        await clients[1].WaitAsync(tables[1].PushInt64(keys, [2, 9, -7, 1L << 50]));
        var pulled = new long[4];
        await clients[0].WaitAsync(tables[0].PullInt64(keys, pulled));
        // A row starts at 0: max(0, -7) is 0.
        Assert.Equal([5L, 9, 0, 1L << 50], pulled);
        var sync = await Assert.ThrowsAsync<ArgumentException>(() => clients[0].DeclareTableAsync(new TableSpec("bad") { ElementType = ElementType.Int32, Handler = "max", Mode = UpdateMode.Sync }));
        Assert.Contains("handler max applies each push as it comes", sync.Message);
        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Floats_into_an_int_table_and_ints_into_a_float_table_are_refused_and_lossy_settings_too()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 1, workers: 1);
        await using var _ = cluster;
        await using var client = clients[0];
        var counts = await client.DeclareTableAsync(new TableSpec("counts") { ElementType = ElementType.Int32 });
        var weights = await client.DeclareTableAsync(new TableSpec("weights"));
        var floatIntoInt = Assert.Throws<PsException>(() => counts.Push([1UL], [1.5f]));
        Assert.Equal(PsErrorCode.WrongElementType, floatIntoInt.Code);
        Assert.Contains("holds int32 values: call PushInt32 / PullInt32", floatIntoInt.Message);
        Assert.Equal(PsErrorCode.WrongElementType, Assert.Throws<PsException>(() => weights.PushInt32([1UL], [1])).Code);
        var lossy = await Assert.ThrowsAsync<ArgumentException>(() => client.DeclareTableAsync(new TableSpec("bad") { ElementType = ElementType.Int32, Compression = "fp16" }));
        Assert.Contains("lossless compression only", lossy.Message);
        var handler = await Assert.ThrowsAsync<ArgumentException>(() => client.DeclareTableAsync(new TableSpec("bad2") { ElementType = ElementType.Int32, Handler = "adagrad" }));
        Assert.Contains("takes handler sum", handler.Message);
        // Nothing reached the table: it still reads zero.
        var pulled = new int[1];
        await client.WaitAsync(counts.PullInt32([1UL], pulled));
        Assert.Equal(0, pulled[0]);
    }
}
