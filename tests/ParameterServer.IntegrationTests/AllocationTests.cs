using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// The data path must not allocate per message in steady state. Everything (client, servers, receive
/// threads) runs in this process, so the process-wide allocation counter sees every byte.
/// </summary>
[Collection("processes")]
public class AllocationTests
{
    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 8)]
    public async Task Steady_state_push_and_pull_allocate_nothing_per_call(bool dense, int width)
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            var spec = dense ? new TableSpec("t", width) { DenseSize = 1 << 16, Handler = "sgd:lr=0.1" } : new TableSpec("t", width);
            var table = await client.DeclareTableAsync(spec);
            table.Consistency = Consistency.BoundedDelay(2);
            var random = new Random(5);
            ulong[] keys = Enumerable.Range(0, 300).Select(_ => (ulong)random.Next(1 << 16)).Distinct().Order().ToArray();
            var values = new float[keys.Length * width];
            var pulled = new float[keys.Length * width];

            void Run(int calls)
            {
                for (int i = 0; i < calls; i++)
                {
                    long push = table.Push(keys, values);
                    long pull = table.Pull(keys, pulled);
                    if (i % 16 == 0)
                    {
                        table.Wait(push);
                        table.Wait(pull);
                    }
                }
                client.WaitAll();
            }

            Run(3000); // warm up: pools, buffers, JIT tiers
            const int calls = 5000;
            using var probe = new AllocProbe();
            probe.On = true;
            long before = GC.GetTotalAllocatedBytes(precise: true);
            Run(calls);
            probe.On = false;

            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            double perCall = allocated / (2.0 * calls);
            // Background timers and rare pool growth may allocate a little; a per-message allocation would be >= 24 B.
            Assert.True(perCall < 8, $"{perCall:0.0} bytes allocated per call ({allocated} in total); sampled types: {probe.Describe()}");
        }
    }
}
