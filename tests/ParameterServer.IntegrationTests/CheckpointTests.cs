using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>Checkpoints written by real server processes, restored into a new job, and refused when damaged.</summary>
[Collection("processes")]
public sealed class CheckpointTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);
    private readonly string _root = Directory.CreateTempSubdirectory("ps-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static JsonElement LastJson(Pserver run, string prefix) =>
        JsonDocument.Parse(run.StdoutLines.Last(l => l.StartsWith(prefix, StringComparison.Ordinal))).RootElement;

    private static async Task<JsonElement> VerifyAsync(string path)
    {
        using var verify = await Pserver.RunAsync(Limit, "checkpoint", "verify", path, "--json");
        Assert.True(verify.ExitCode == 0, verify.Describe());
        return LastJson(verify, "{\"ok\"");
    }

    [Fact]
    public async Task A_job_resumes_from_its_final_checkpoint_on_a_different_number_of_servers()
    {
        using (var first = await Pserver.RunAsync(Limit, "local", "--servers", "3", "--workers", "2", "--app", "counter", "--json", "--keys", "400", "--rounds", "25",
            "--width", "2", "--checkpoint-dir", _root))
        {
            Assert.True(first.ExitCode == 0, first.Describe());
        }
        var written = await VerifyAsync(_root);
        var table = written.GetProperty("tables")[0];
        Assert.Equal(400, table.GetProperty("rows").GetInt64());
        Assert.Equal(400 * 2 * 50.0, table.GetProperty("value_sum").GetDouble()); // every value = 2 workers x 25 rounds

        using var second = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "2", "--app", "counter", "--json", "--keys", "400", "--rounds", "10",
            "--width", "2", "--restore", _root, "--checkpoint-dir", _root);
        Assert.True(second.ExitCode == 0, second.Describe());
        foreach (var line in second.StdoutLines.Where(l => l.Contains("{\"app\":\"counter\",\"ok\":true,\"rank\"", StringComparison.Ordinal)))
        {
            var worker = JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]).RootElement;
            Assert.Equal(50, worker.GetProperty("initial_min").GetDouble()); // the restored values, on every key
            Assert.Equal(50, worker.GetProperty("initial_max").GetDouble());
        }
        var resumed = await VerifyAsync(_root);
        Assert.Equal(2, resumed.GetProperty("epoch").GetInt64()); // numbered after the restored one
        Assert.Equal(400 * 2 * 70.0, resumed.GetProperty("tables")[0].GetProperty("value_sum").GetDouble());
    }

    [Fact]
    public async Task After_a_kill_of_every_process_the_job_restores_exactly_the_last_complete_checkpoint()
    {
        using (var job = await ProcessCluster.StartAsync(3, 2, 2, ["--checkpoint-dir", _root, "--checkpoint-every", "0.3"],
            "--app", "counter", "--json", "--keys", "2000", "--rounds", "400", "--pause-ms", "10"))
        {
            await job.WaitUntilPushingAsync();
            var deadline = DateTime.UtcNow + Limit;
            while (Directory.GetFiles(_root, "MANIFEST", SearchOption.AllDirectories).Length < 2 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
            Assert.True(job.Workers.All(w => !w.Process.HasExited), "the pushes ended before two checkpoints were taken: make the run longer");
            foreach (var process in job.Workers.Concat(job.Servers).Append(job.Scheduler))
            {
                process.Process.Kill(); // SIGKILL, mid-run, maybe mid-checkpoint
            }
        }
        var checkpoint = await VerifyAsync(_root); // the newest complete epoch; an unfinished one has no manifest
        double sum = checkpoint.GetProperty("tables")[0].GetProperty("value_sum").GetDouble();
        Assert.True(sum > 0, checkpoint.ToString());
        foreach (var file in checkpoint.GetProperty("files").EnumerateArray())
        {
            // Every push adds 1 to every key, one frame per server: a server's snapshot taken between pushes (not
            // block by block while they land) holds one value on all its keys.
            Assert.Equal(file.GetProperty("value_min").GetDouble(), file.GetProperty("value_max").GetDouble());
        }

        using var resumed = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "1", "--app", "counter", "--json", "--keys", "2000", "--rounds", "1",
            "--restore", _root);
        Assert.True(resumed.ExitCode == 0, resumed.Describe());
        string line = resumed.StdoutLines.Single(l => l.Contains("{\"app\":\"counter\",\"ok\":true,\"rank\"", StringComparison.Ordinal));
        var worker = JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]).RootElement;
        Assert.Equal(sum, worker.GetProperty("initial_sum").GetDouble());
    }

    [Theory]
    [InlineData("flip")]
    [InlineData("truncate")]
    [InlineData("manifest")]
    public async Task A_damaged_checkpoint_is_refused_with_the_file_named(string damage)
    {
        using (var run = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "1", "--app", "counter", "--keys", "100", "--rounds", "3", "--checkpoint-dir", _root))
        {
            Assert.True(run.ExitCode == 0, run.Describe());
        }
        string folder = Directory.GetDirectories(_root, "epoch-*").Single();
        string victim = damage == "manifest" ? Path.Combine(folder, "MANIFEST") : Directory.GetFiles(folder, "server-*.psck").First();
        byte[] bytes = File.ReadAllBytes(victim);
        if (damage == "truncate")
        {
            File.WriteAllBytes(victim, bytes[..(bytes.Length / 2)]);
        }
        else
        {
            bytes[bytes.Length / 3] ^= 0x10;
            File.WriteAllBytes(victim, bytes);
        }

        using var verify = await Pserver.RunAsync(Limit, "checkpoint", "verify", _root);
        Assert.Equal(2, verify.ExitCode);
        Assert.Contains(victim, verify.Stderr);
        using var restore = await Pserver.RunAsync(Limit, "local", "--app", "counter", "--restore", _root);
        Assert.Equal(2, restore.ExitCode);
        Assert.Contains(victim, restore.Stderr);
        Assert.DoesNotContain("Registered", restore.Stderr); // refused before any node started
    }
}
