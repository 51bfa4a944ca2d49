using System.Text.Json;
using ParameterServer.Client;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Hosting.Http;
using ParameterServer.Protocol;

namespace ParameterServer.Tests;

/// <summary>What workers report with their heartbeats, the stragglers status finds in it, and the dashboard's history.</summary>
public class JobHealthTests
{
    [Fact]
    public void A_report_reads_back_as_written()
    {
        var report = new NodeReport { Steps = 12, Examples = 1200, Loss = 0.25, StepMs = 13.5, Phase = "epoch 2/3", Fraction = 0.4 };
        report.Servers.Add((1, 0.75, 300));
        report.Servers.Add((4, 12.5, 2));
        report.SlowCalls.Add("barrier #2 has waited 3.0 s for the other workers to reach it");
        var w = new PayloadWriter();
        report.Write(w);
        var r = new PayloadReader(w.WrittenSpan);
        var back = NodeReport.Read(ref r);
        Assert.Equal(0, r.Remaining);
        Assert.Equal((12L, 1200L, 0.25, 13.5, "epoch 2/3", 0.4), (back.Steps, back.Examples, back.Loss, back.StepMs, back.Phase, back.Fraction));
        Assert.Equal(report.Servers, back.Servers);
        Assert.Equal(report.SlowCalls, back.SlowCalls);
    }

    [Fact]
    public void A_report_with_more_slow_calls_than_allowed_is_refused()
    {
        var report = new NodeReport();
        for (int i = 0; i <= NodeReport.MaxSlowCalls; i++)
        {
            report.SlowCalls.Add($"call {i}");
        }
        var w = new PayloadWriter();
        report.Write(w);
        Assert.Throws<ProtocolException>(() =>
        {
            var r = new PayloadReader(w.WrittenSpan);
            NodeReport.Read(ref r);
        });
    }

    [Theory]
    [InlineData("1:10,2:11,3:30", "3")]          // 30 ms against a median of 10.5: flagged
    [InlineData("1:10,2:11,3:14", "")]           // 14 is not 1.5x the others
    [InlineData("1:0.3,2:0.9", "")]              // 3x, but 0.6 ms: noise on loopback
    [InlineData("1:20", "")]                     // nobody to compare with
    [InlineData("1:10,2:40,3:41,4:42", "")]      // one fast worker does not make three stragglers: the median of the others is 40+
    [InlineData("1:10,2:10,3:10,4:100", "4")]
    public void Stragglers_are_well_past_the_median_of_the_others(string times, string expected)
    {
        var parsed = times.Split(',').Select(t => t.Split(':')).ToDictionary(p => int.Parse(p[0]), p => double.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(expected, string.Join(",", ClusterStatus.Stragglers(parsed).Order()));
    }

    [Fact]
    public void The_dashboards_history_gives_rates_over_at_least_two_seconds_and_sends_only_newer_samples()
    {
        var history = new JobHistory();
        history.Add(1_000, Status(sent: 0, answerMs: null));
        history.Add(2_000, Status(sent: 1_000_000, answerMs: 0.5)); // too close to the first for a rate
        history.Add(3_500, Status(sent: 5_000_000, answerMs: 0.7)); // 5 MB over 2.5 s since the first
        using var all = Samples(history, 0);
        Assert.Equal(3, all.RootElement.GetArrayLength());
        var server = all.RootElement[2].GetProperty("nodes").GetProperty("1");
        Assert.Equal(2_000_000, server.GetProperty("sent_s").GetDouble());
        Assert.Equal(0.7, server.GetProperty("answer_ms").GetDouble());
        Assert.False(all.RootElement[1].GetProperty("nodes").GetProperty("1").TryGetProperty("sent_s", out _));
        Assert.Equal(3, all.RootElement[2].GetProperty("nodes").GetProperty("2").GetProperty("step_ms").GetDouble());
        using var newer = Samples(history, 2_000);
        Assert.Equal(1, newer.RootElement.GetArrayLength());
    }

    private static JsonElement Status(long sent, double? answerMs)
    {
        string json = JsonSerializer.Serialize(new
        {
            nodes = new object[]
            {
                new { id = 1, role = "server", alive = true, progress = (object?)null, answer_ms = answerMs },
                new { id = 2, role = "worker", alive = true, progress = (object?)new { step_ms = 3.0, loss = (double?)null }, answer_ms = (double?)null },
            },
            traffic = new Dictionary<string, object>
            {
                ["1"] = new { bytes_sent = sent, bytes_received = 0L },
                ["2"] = new { bytes_sent = 0L, bytes_received = sent },
            },
        });
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    private static JsonDocument Samples(JobHistory history, long since)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            history.WriteSince(w, since);
        }
        return JsonDocument.Parse(buffer.ToArray());
    }
}
