using System.Runtime.CompilerServices;
using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>The README's push/pull example, compiled and run against a real (in-process) cluster.</summary>
public class ReadmeExampleTests
{
    /// <summary>
    /// The example this test runs is the README's, line for line (comments, usings, and the client's connect and finish,
    /// which the test's harness does, aside): a change to either fails here until the other follows.
    /// </summary>
    [Fact]
    public void The_test_runs_the_code_the_readme_shows()
    {
        static string[] Code(IEnumerable<string> lines) =>
            [.. lines.Select(l => l.Split("//")[0].Trim()).Where(l => l.Length > 0)];

        string root = Path.GetDirectoryName(ThisFile())!;
        while (!File.Exists(Path.Combine(root, "ParameterServer.slnx")))
        {
            root = Path.GetDirectoryName(root) ?? throw new DirectoryNotFoundException("ParameterServer.slnx not found above " + ThisFile());
        }
        var readme = File.ReadAllLines(Path.Combine(root, "README.md"));
        int start = Array.FindIndex(readme, l => l.Trim() == "## Push and pull from your code");
        Assert.True(start >= 0, "README.md has no section 'Push and pull from your code'");
        int open = Array.FindIndex(readme, start, l => l.Trim() == "```csharp");
        int close = Array.FindIndex(readme, open + 1, l => l.Trim() == "```");
        var shown = Code(readme[(open + 1)..close]).Where(l => !l.StartsWith("using ", StringComparison.Ordinal) && !l.Contains("PsClient.ConnectAsync", StringComparison.Ordinal) && !l.Contains("FinishAsync", StringComparison.Ordinal)).ToArray();

        var source = File.ReadAllLines(ThisFile());
        int from = Array.FindIndex(source, l => l.Trim() == "// --- as in README.md ---");
        int to = Array.FindIndex(source, from + 1, l => l.Trim() == "// --- end ---");
        var run = Code(source[(from + 1)..to]);
        Assert.Equal(shown, run);
    }

    private static string ThisFile([CallerFilePath] string path = "") => path;

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
            w.Wait(next);
            // --- end ---
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
