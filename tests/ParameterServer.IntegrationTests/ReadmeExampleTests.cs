using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>The README's push/pull example, compiled and run against a real (in-process) cluster.</summary>
public class ReadmeExampleTests
{
    private static float[] Gradient(float[] weights) => weights.Select(w => w - 1f).ToArray();

    [Fact]
    public async Task The_readme_example_runs()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var ps = clients[0];
            // --- as in README.md ---
            var w = await ps.DeclareTableAsync(new TableSpec("weights", width: 1) { Handler = "ftrl:alpha=0.1,l1=1" });
            w.Consistency = Consistency.BoundedDelay(4);
            ulong[] keys = [3, 17, 4242];
            float[] weights = new float[keys.Length];
            long pulled = w.Pull(keys, weights);
            w.Wait(pulled);
            long pushed = w.Push(keys, Gradient(weights));
            long next = w.Pull(keys, weights, after: [pushed]);
            // --- end ---
            w.Wait(next);
            // FTRL with l1 = 1 keeps a weight at exactly 0 until |z| > l1: one gradient of -1 is not enough.
            Assert.All(weights, v => Assert.Equal(0f, v));
            for (int i = 0; i < 5; i++)
            {
                w.Wait(w.Push(keys, [-1f, -1f, -1f]));
            }
            w.Wait(w.Pull(keys, weights));
            Assert.All(weights, v => Assert.True(v > 0, $"weight {v} should have moved"));
            await ps.FinishAsync();
        }
    }
}
