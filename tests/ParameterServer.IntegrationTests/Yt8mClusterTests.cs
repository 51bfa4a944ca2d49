using System.Text.Json;

namespace ParameterServer.IntegrationTests;

/// <summary>`pserver data gen-yt8m` then `pserver train yt8m` on a real local cluster; a damaged shard stops the job naming it.</summary>
[Collection("processes")]
public sealed class Yt8mClusterTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(240);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-yt8m-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>`pserver data gen-yt8m` into this test's directory; returns its standard output.</summary>
    private async Task<string> GenerateAsync(int videos, int shards, int validation)
    {
        using var gen = await Pserver.RunAsync(Limit, "data", "gen-yt8m", "--videos", Inv(videos), "--shards", Inv(shards), "--validation-videos", Inv(validation),
            "--vocabulary", SharedData.Youtube8mVocabulary, "--out", _dir);
        Assert.True(gen.ExitCode == 0, gen.Describe());
        return gen.Stdout;

        static string Inv(int n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Generated_shards_train_a_logistic_tagger_over_the_servers_and_score_gap()
    {
        Assert.Contains("the true model scores GAP@20", await GenerateAsync(videos: 1200, shards: 2, validation: 300), StringComparison.Ordinal);
        using var run = await Pserver.RunAsync(Limit, "train", "yt8m", "--data", _dir, "--vocabulary", SharedData.Youtube8mVocabulary,
            "--servers", "2", "--workers", "2", "--epochs", "2", "--json");
        Assert.True(run.ExitCode == 0, run.Describe());
        var summary = JsonDocument.Parse(run.StdoutLines.Last(l => l.StartsWith("{\"app\":\"yt8m\",\"model\"", StringComparison.Ordinal))).RootElement;
        Assert.Equal(300, summary.GetProperty("test_videos").GetInt64());
        Assert.Equal(4_452_886, summary.GetProperty("parameters").GetInt64()); // 1,152 x 3,862 weights and 3,862 biases
        Assert.InRange(summary.GetProperty("gap").GetDouble(), 1e-3, 1);
        // The most frequent label alone would hit about 0.2 of the videos: the model learned more than the prior.
        Assert.True(summary.GetProperty("hit_at_1").GetDouble() > 0.3, summary.ToString());
        Assert.True(summary.GetProperty("true_model_gap").GetDouble() > 0.5);
    }

    [Fact]
    public async Task A_mixture_of_experts_too_big_for_one_capped_server_is_refused_and_trains_on_the_servers_advised()
    {
        await GenerateAsync(videos: 256, shards: 2, validation: 100);
        // 2 experts: (2 x 2 + 1) x 3,862 x 1,153 = 22.3M weights, 178 MB with AdaGrad's accumulators, and 89 MB more for
        // the table the first worker publishes its initial weights in: 256 MiB, twice that in copies from 2 servers on.
        string[] job = ["train", "yt8m", "--data", _dir, "--vocabulary", SharedData.Youtube8mVocabulary, "--model", "moe", "--experts", "2",
            "--workers", "2", "--epochs", "1", "--batch", "64", "--max-memory-mb", "150", "--json"];
        int advised;
        using (var refused = await Pserver.RunAsync(Limit, [.. job, "--servers", "1"]))
        {
            Assert.NotEqual(0, refused.ExitCode);
            string output = refused.Stdout + refused.Stderr;
            Assert.Contains("table 'yt8m.moe' (170 MiB with its optimizer state) does not fit", output, StringComparison.Ordinal);
            // 512 MiB over 150 MiB servers: 4 on an even split, 5 if some placement of 4 puts too much on one.
            var advice = System.Text.RegularExpressions.Regex.Match(output, @"The job's tables need 256 MiB in all: start at least (\d+) servers \(--servers \1\)");
            Assert.True(advice.Success, output);
            advised = int.Parse(advice.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(advised, 4, 5);
        }
        // The advice holds whichever ids the servers register with.
        using var run = await Pserver.RunAsync(Limit, [.. job, "--servers", advised.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.True(run.ExitCode == 0, run.Describe());
        var summary = JsonDocument.Parse(run.StdoutLines.Last(l => l.StartsWith("{\"app\":\"yt8m\",\"model\"", StringComparison.Ordinal))).RootElement;
        Assert.Equal("moe", summary.GetProperty("model").GetString());
        Assert.Equal(22_264_430, summary.GetProperty("parameters").GetInt64());
        Assert.Equal(advised, summary.GetProperty("servers").GetInt32());
        Assert.InRange(summary.GetProperty("gap").GetDouble(), 1e-4, 1);
    }

    [Fact]
    public async Task Plan_recommends_servers_from_given_figures_and_measures_what_is_not_given()
    {
        // 100 MB over 1 Gbit/s links, 4 workers, 200 ms of compute: servers help until 2 copies x 4 workers / S nears 1.
        using (var given = await Pserver.RunAsync(Limit, "plan", "--workers", "4", "--model-bytes", "100000000", "--bandwidth-gbps", "1", "--step-ms", "200", "--json"))
        {
            Assert.True(given.ExitCode == 0, given.Describe());
            var plan = JsonDocument.Parse(given.StdoutLines.Last()).RootElement;
            Assert.Equal(7, plan.GetProperty("recommended_servers").GetInt32());
            var one = plan.GetProperty("rows")[0];
            Assert.Equal(4900, one.GetProperty("step_ms").GetDouble(), 1); // lockstep 200 + 4 x 800 + 4 x 800, interleaved 4 x 800: the mean
        }
        using var measured = await Pserver.RunAsync(Limit, "plan", "--workers", "2", "--model", "logistic");
        Assert.True(measured.ExitCode == 0, measured.Describe());
        Assert.Contains("yt8m logistic: 4,452,886 parameters; bandwidth measured", measured.Stdout, StringComparison.Ordinal);
        Assert.Contains("advice: ", measured.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_trained_model_predicts_each_videos_top_tags_by_name()
    {
        await GenerateAsync(videos: 600, shards: 2, validation: 50);
        string model = Path.Combine(_dir, "model.psnn");
        using (var train = await Pserver.RunAsync(Limit, "train", "yt8m", "--data", _dir, "--vocabulary", SharedData.Youtube8mVocabulary,
            "--servers", "1", "--workers", "1", "--epochs", "2", "--model-out", model, "--json"))
        {
            Assert.True(train.ExitCode == 0, train.Describe());
        }
        string validation = Path.Combine(_dir, "validate-0000.tfrecord");
        using var predict = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", validation, "--vocabulary", SharedData.Youtube8mVocabulary, "--top", "3");
        Assert.True(predict.ExitCode == 0, predict.Describe());
        var lines = predict.StdoutLines.Where(l => l.StartsWith("v-", StringComparison.Ordinal)).ToList();
        Assert.Equal(50, lines.Count);
        // "v-0: NAME P, NAME P, NAME P": entity names from vocabulary.csv, each with its probability.
        Assert.Matches(@"^v-0: .+ [01]\.\d\d(, .+ [01]\.\d\d){2}$", lines[0]); // names may hold commas
        Assert.Contains(predict.StdoutLines, l => l.StartsWith("50 videos: GAP@20 ", StringComparison.Ordinal));
        using var wrong = await Pserver.RunAsync(Limit, "predict", "--model", model, "--data", Path.Combine(_dir, "missing"), "--vocabulary", SharedData.Youtube8mVocabulary);
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains("is neither a .tfrecord shard nor a directory of them", wrong.Stderr, StringComparison.Ordinal);
    }

    [NetworkLabFact]
    public async Task The_scaling_bench_runs_each_node_on_its_own_rate_limited_host_beside_the_plan()
    {
        await GenerateAsync(videos: 256, shards: 2, validation: 20);
        using var bench = await Pserver.RunAsync(Limit, "bench", "yt8m-scale", "--data", _dir, "--vocabulary", SharedData.Youtube8mVocabulary,
            "--servers-list", "1", "--workers-list", "1", "--link-mbit", "2000", "--epochs", "1", "--batch", "64", "--json");
        Assert.True(bench.ExitCode == 0, bench.Describe());
        var row = JsonDocument.Parse(bench.StdoutLines.Single(l => l.StartsWith("{\"bench\":\"yt8m-scale\"", StringComparison.Ordinal))).RootElement;
        Assert.Equal(2000, row.GetProperty("link_mbit").GetInt32());
        // 17.8 MB a pull over 250 MB/s takes at least 71 ms: the link's rate bounds what the job measured.
        Assert.True(row.GetProperty("pull_ms").GetDouble() > 60, row.ToString());
        Assert.True(row.GetProperty("plan_pull_ms").GetDouble() is > 70 and < 72, row.ToString());
        Assert.True(row.GetProperty("bytes_per_server").GetInt64() > 2 * 17_811_544, row.ToString());
    }

    [Fact]
    public async Task A_truncated_shard_stops_the_job_naming_the_file_and_record()
    {
        await GenerateAsync(videos: 200, shards: 1, validation: 10);
        string shard = Path.Combine(_dir, "train-0000.tfrecord");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..^100]);
        using var run = await Pserver.RunAsync(Limit, "train", "yt8m", "--data", _dir, "--vocabulary", SharedData.Youtube8mVocabulary, "--servers", "1", "--workers", "1", "--epochs", "1");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("train-0000.tfrecord: record 200: the file ends inside the record", run.Stderr, StringComparison.Ordinal);
    }
}
