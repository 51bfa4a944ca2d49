using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ParameterServer.IntegrationTests;

/// <summary>`--metrics-port`: every node of a real cluster serves Prometheus text and health while a job runs.</summary>
[Collection("processes")]
public sealed partial class MetricsTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private static readonly HttpClient Http = WithToken(new HttpClient { Timeout = TimeSpan.FromSeconds(10) });

    /// <summary>The job's read-only token (derived from the tests' secret, JobSecretSetup), which every HTTP endpoint but the probes asks for.</summary>
    private static string Token => System.Text.Encoding.ASCII.GetString(ParameterServer.Transport.JobSecret.ReadTokenOf(ParameterServer.Transport.JobSecret.FromEnvironment()!));

    private static HttpClient WithToken(HttpClient client)
    {
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Token);
        return client;
    }

    [Fact]
    public async Task The_HTTP_side_of_a_job_with_a_secret_needs_its_read_only_token_except_for_the_probes()
    {
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--servers", "1", "--workers", "1", "--metrics-port", "0");
        string metrics = await MetricsUrlAsync(scheduler);
        using var anonymous = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { Timeout = TimeSpan.FromSeconds(10) };

        using (var refused = await anonymous.GetAsync(metrics))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("pserver secret --read-token", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var wrong = new HttpRequestMessage(HttpMethod.Get, metrics))
        {
            wrong.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", new string('0', Token.Length));
            using var answer = await anonymous.SendAsync(wrong);
            Assert.Equal(HttpStatusCode.Unauthorized, answer.StatusCode);
        }
        using (var probe = await anonymous.GetAsync(metrics.Replace("/metrics", "/health/live", StringComparison.Ordinal)))
        {
            Assert.Equal(HttpStatusCode.OK, probe.StatusCode); // orchestrators' probes need no token
        }
        using (var health = await anonymous.GetAsync(metrics.Replace("/metrics", "/health", StringComparison.Ordinal)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, health.StatusCode);
        }
        // A browser: ?token= once sets a cookie and sends it back to the page without the token in the address.
        using var once = await anonymous.GetAsync(metrics + "?token=" + Token);
        Assert.Equal(HttpStatusCode.Redirect, once.StatusCode);
        Assert.Equal("/metrics", once.Headers.Location?.OriginalString);
        string cookie = once.Headers.GetValues("Set-Cookie").Single();
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        using (var withCookie = new HttpRequestMessage(HttpMethod.Get, metrics))
        {
            withCookie.Headers.Add("Cookie", cookie.Split(';')[0]);
            using var answer = await anonymous.SendAsync(withCookie);
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Contains("ps_scheduler_nodes", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var bearer = await Http.GetAsync(metrics))
        {
            Assert.Equal(HttpStatusCode.OK, bearer.StatusCode);
        }
    }

    [Fact]
    public async Task Every_node_serves_prometheus_metrics_and_health_while_a_job_runs()
    {
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--servers", "1", "--workers", "1", "--metrics-port", "0");
        string address = (await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit))["scheduler listening on ".Length..];
        using var server = Pserver.Start("server", "--scheduler", address, "--metrics-port", "0");
        // About 5 s of pushes: long enough to scrape every node while the job runs.
        using var worker = Pserver.Start("worker", "--scheduler", address, "--metrics-port", "0", "--app", "counter", "--rounds", "200", "--pause-ms", "25", "--json");
        string schedulerUrl = await MetricsUrlAsync(scheduler), serverUrl = await MetricsUrlAsync(server), workerUrl = await MetricsUrlAsync(worker);

        await Until(async () => Value(await ScrapeAsync(serverUrl), "ps_server_requests_total") > 50, "the server to count 50 requests");
        var serverMetrics = await ScrapeAsync(serverUrl);
        Assert.Equal(1000, Value(serverMetrics, "ps_server_table_keys", ("table", "counter")));
        Assert.True(Value(serverMetrics, "ps_node_traffic_bytes_total", ("direction", "received"), ("type", "push")) > 0);
        Assert.True(Value(serverMetrics, "dotnet_process_memory_working_set_bytes") > 0); // the runtime's own meter

        var workerMetrics = await ScrapeAsync(workerUrl);
        Assert.True(Value(workerMetrics, "ps_client_call_duration_seconds_count", ("table", "counter"), ("operation", "push")) > 0);
        Assert.True(Value(workerMetrics, "ps_app_steps_total") > 0); // the counter app reports a step per round
        Assert.True(Value(workerMetrics, "ps_client_call_staleness_count", ("table", "counter")) > 0);
        var schedulerMetrics = await ScrapeAsync(schedulerUrl);
        Assert.Equal(1, Value(schedulerMetrics, "ps_scheduler_nodes", ("node_role", "server"), ("state", "alive")));
        Assert.Equal(2, Value(schedulerMetrics, "ps_scheduler_events_total", ("kind", "join"))); // the server and the worker registered

        using var health = JsonDocument.Parse(await Http.GetStringAsync(workerUrl.Replace("/metrics", "/health", StringComparison.Ordinal)));
        Assert.Equal("worker", health.RootElement.GetProperty("role").GetString());
        Assert.True(health.RootElement.GetProperty("ready").GetBoolean(), health.RootElement.ToString());
        using var ready = await Http.GetAsync(serverUrl.Replace("/metrics", "/health/ready", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        await worker.WaitForExitAsync(Limit);
        Assert.True(worker.ExitCode == 0, worker.Describe());
    }

    [Fact]
    public async Task Trace_writes_one_chrome_timeline_of_the_workers_steps_and_calls_and_the_servers_requests()
    {
        string dir = Directory.CreateTempSubdirectory("ps-trace-").FullName;
        try
        {
            string path = Path.Combine(dir, "job.json");
            using var job = await Pserver.RunAsync(Limit, "local", "--servers", "2", "--workers", "2", "--app", "counter", "--rounds", "100", "--pause-ms", "2", "--trace", path, "--trace-steps", "5-15");
            Assert.True(job.ExitCode == 0, job.Describe());
            Assert.Contains($"spans of the job's servers and workers in {path}", job.Stderr, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFiles(dir, "*.part")); // merged and removed
            using var trace = JsonDocument.Parse(File.ReadAllText(path));
            var events = trace.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
            var spans = events.Where(e => e.GetProperty("ph").GetString() == "X").ToList();
            Assert.Equal(20, spans.Count(e => e.GetProperty("name").GetString() == "step")); // steps 5..14 of each worker
            Assert.Contains(spans, e => e.GetProperty("name").GetString() == "push");
            Assert.Contains(spans, e => e.GetProperty("name").GetString() == "server push");
            var names = events.Where(e => e.GetProperty("name").GetString() == "process_name").Select(e => e.GetProperty("args").GetProperty("name").GetString()!).ToList();
            Assert.Equal(4, names.Count);
            Assert.Equal(2, names.Count(n => n.StartsWith("server ", StringComparison.Ordinal)));
            // Spans on one row (process, lane) never overlap: chrome://tracing would nest them wrongly.
            foreach (var row in spans.GroupBy(e => (e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32())))
            {
                long end = 0;
                foreach (var e in row.OrderBy(e => e.GetProperty("ts").GetInt64()))
                {
                    Assert.True(e.GetProperty("ts").GetInt64() >= end, $"overlapping spans on row {row.Key}");
                    end = e.GetProperty("ts").GetInt64() + e.GetProperty("dur").GetInt64();
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_metrics_port_in_use_is_refused_naming_it()
    {
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--metrics-port", "0");
        string url = await MetricsUrlAsync(scheduler);
        int port = new Uri(url).Port;
        using var second = await Pserver.RunAsync(Limit, "scheduler", "--port", "0", "--metrics-port", port.ToString(CultureInfo.InvariantCulture));
        Assert.NotEqual(0, second.ExitCode);
        Assert.Contains($"cannot serve metrics on 127.0.0.1:{port}", second.Stderr, StringComparison.Ordinal);
    }

    /// <summary>The URL the node logged for its /metrics.</summary>
    private static async Task<string> MetricsUrlAsync(Pserver node)
    {
        string line = await node.WaitForLineAsync(l => l.Contains("Metrics on http://", StringComparison.Ordinal), Limit, stderr: true);
        return UrlPattern().Match(line).Value;
    }

    /// <summary>Scrapes and parses the exposition: every sample line is `name{labels} value`, and every name has a # TYPE.</summary>
    private static async Task<List<(string Name, Dictionary<string, string> Labels, double Value)>> ScrapeAsync(string url)
    {
        string text = await Http.GetStringAsync(url);
        var types = new HashSet<string>();
        var samples = new List<(string, Dictionary<string, string>, double)>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                types.Add(line.Split(' ')[2]);
                continue;
            }
            if (line.StartsWith('#'))
            {
                continue;
            }
            var m = SamplePattern().Match(line);
            Assert.True(m.Success, $"not a Prometheus sample line: {line}");
            string name = m.Groups["name"].Value;
            Assert.True(types.Contains(name) || types.Contains(Regex.Replace(name, "_(bucket|sum|count)$", "")), $"{name} has no # TYPE before it");
            var labels = LabelPattern().Matches(m.Groups["labels"].Value).ToDictionary(l => l.Groups[1].Value, l => l.Groups[2].Value);
            samples.Add((name, labels, double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }
        return samples;
    }

    /// <summary>The sum of the samples of a metric whose labels include the given ones.</summary>
    private static double Value(List<(string Name, Dictionary<string, string> Labels, double Value)> samples, string name, params (string Key, string Value)[] labels)
    {
        var matching = samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).ToList();
        Assert.True(matching.Count > 0, $"no sample of {name} with {string.Join(", ", labels)}; names: {string.Join(", ", samples.Select(s => s.Name).Distinct())}");
        return matching.Sum(s => s.Value);
    }

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"waited {Limit.TotalSeconds} s for {what}");
            await Task.Delay(100);
        }
    }

    [GeneratedRegex(@"http://[^\s,]+/metrics")]
    private static partial Regex UrlPattern();

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>[-+0-9.eE]+|NaN|[+-]Inf)( \d+)?$")]
    private static partial Regex SamplePattern();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPattern();
}
