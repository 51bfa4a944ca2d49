using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// The scheduler's dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) against a real job:
/// it shows the nodes `pserver status --json` shows (states, ring shares, stragglers, slow calls), updates at least
/// once a second, and a killed server appears as an event and a dead row. The test writes the screenshot the README shows (docs/dashboard.png is a copy of it).
/// </summary>
[Collection("processes")]
public sealed class DashboardTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [ChromiumFact]
    public async Task The_dashboard_shows_the_jobs_nodes_updates_every_second_and_shows_a_server_kill_as_an_event()
    {
        // Rank 1 pauses 10 ms a round and rank 0 does not: rank 1 is a straggler, and rank 0, done first, waits at a barrier.
        using var job = await ProcessCluster.StartAsync(3, 2, 2, ["--dashboard-port", "0", "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000"],
            "--app", "counter", "--json", "--keys", "2000", "--rounds", "3000", "--pause-ms", "10", "--slow-rank", "1");
        string url = (await job.Scheduler.WaitForLineAsync(l => l.StartsWith("dashboard at ", StringComparison.Ordinal), Limit))["dashboard at ".Length..];
        await job.WaitUntilPushingAsync();

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = ChromiumFactAttribute.Chromium, Headless = true, Args = ["--no-sandbox"] });
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1200, Height = 1100 } });
        page.SetDefaultTimeout((float)Limit.TotalMilliseconds);

        // Loaded: from the start of navigation to the first drawing of the job's status (the page's own clock).
        // The job has a secret (JobSecretSetup): the page asks for its read-only token once, as `pserver local` prints it.
        await page.GotoAsync(url + "?token=" + System.Text.Encoding.ASCII.GetString(ParameterServer.Transport.JobSecret.ReadTokenOf(ParameterServer.Transport.JobSecret.FromEnvironment()!)));
        await page.WaitForFunctionAsync("() => window.psDashboard.updates >= 1");
        double loadMs = await page.EvaluateAsync<double>("() => window.psDashboard.firstRenderMs");
        output.WriteLine($"the dashboard drew the job {loadMs:0} ms after navigation started");
        Assert.True(loadMs < 3000, $"the dashboard took {loadMs:0} ms to show the job (target: under 1 s)");

        // The same nodes, roles, states and ring shares as `pserver status --json`.
        var expected = await SameNodesAsync(page, job.Address);

        // The straggler is flagged, and the fast worker's wait at the barrier is listed as a slow call.
        await page.WaitForSelectorAsync("#nodes tr[data-straggler=true]");
        await page.WaitForSelectorAsync("#slow li:has-text('barrier')");
        await SameNodesAsync(page, job.Address);

        // At least once a second: count updates over 3 s.
        int before = await page.EvaluateAsync<int>("() => window.psDashboard.updates");
        await Task.Delay(3000);
        int after = await page.EvaluateAsync<int>("() => window.psDashboard.updates");
        output.WriteLine($"{after - before} updates in 3 s");
        Assert.True(after - before >= 3, $"{after - before} updates in 3 s");
        Assert.Equal("", await page.EvaluateAsync<string>("() => window.psDashboard.error"));

        // A server killed with SIGKILL: a death event naming it, its row dead, while the job goes on.
        job.Servers[^1].Process.Kill();
        var killed = Stopwatch.StartNew();
        var death = await page.WaitForSelectorAsync("#events li[data-kind=death]:has-text('server')");
        string text = (await death!.TextContentAsync())!;
        int victimId = int.Parse(System.Text.RegularExpressions.Regex.Match(text, @"server (\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
        await page.WaitForSelectorAsync($"#nodes tr[data-node='{victimId}'][data-state=dead]");
        output.WriteLine($"the kill was on the page {killed.ElapsedMilliseconds} ms later: {text}");
        await Task.Delay(1500); // a few more points on the plot after the event line
        Assert.True(job.Workers.All(w => !w.Process.HasExited), "the worker ended before the kill: make the run longer");
        await SameNodesAsync(page, job.Address);

        string screenshot = Path.Combine(AppContext.BaseDirectory, "dashboard.png");
        await page.ScreenshotAsync(new() { Path = screenshot, FullPage = true });
        output.WriteLine($"screenshot: {screenshot}");
        Assert.True(new FileInfo(screenshot).Length > 10_000);
    }

    /// <summary>
    /// Waits until the page's node table says what `pserver status --json` says (the page polls twice a second, so
    /// it may be one answer behind) and returns it.
    /// </summary>
    private static async Task<SortedDictionary<int, string>> SameNodesAsync(IPage page, string scheduler)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var expected = await StatusNodesAsync(scheduler);
            await Task.Delay(700);
            var shown = await NodeRowsAsync(page);
            if (expected.SequenceEqual(shown) || DateTime.UtcNow > deadline)
            {
                Assert.Equal(expected, shown);
                return expected;
            }
        }
    }

    /// <summary>`pserver status --json`'s nodes as id -> "role state share%".</summary>
    private static async Task<SortedDictionary<int, string>> StatusNodesAsync(string scheduler)
    {
        using var status = await Pserver.RunAsync(Limit, "status", "--scheduler", scheduler, "--json");
        Assert.True(status.ExitCode == 0, status.Describe());
        using var json = JsonDocument.Parse(status.Stdout);
        var nodes = new SortedDictionary<int, string>();
        foreach (var n in json.RootElement.GetProperty("nodes").EnumerateArray())
        {
            string role = n.GetProperty("role").GetString()!;
            bool alive = n.GetProperty("alive").GetBoolean();
            string share = role == "server" && alive ? (100 * n.GetProperty("ring_share").GetDouble()).ToString("0.0", CultureInfo.InvariantCulture) + " %" : "";
            string straggler = n.GetProperty("straggler").GetBoolean() ? " straggler" : "";
            string slow = string.Concat(n.GetProperty("slow_calls").EnumerateArray().Select(c => " slow call"));
            nodes[n.GetProperty("id").GetInt32()] = $"{role} {n.GetProperty("state").GetString()} {share}".TrimEnd() + straggler + slow;
        }
        return nodes;
    }

    /// <summary>The page's node table in the same form: id, role, state and ring share columns.</summary>
    private static async Task<SortedDictionary<int, string>> NodeRowsAsync(IPage page)
    {
        var rows = await page.EvaluateAsync<string[][]>(
            "() => [...document.querySelectorAll('#nodes tbody tr')].map(r => [...r.cells].map(c => c.textContent).concat([r.dataset.straggler]))");
        var slow = await page.EvaluateAsync<int[]>("() => [...document.querySelectorAll('#slow li')].map(li => +li.dataset.node)");
        var nodes = new SortedDictionary<int, string>();
        foreach (var cells in rows)
        {
            int id = int.Parse(cells[0], CultureInfo.InvariantCulture);
            nodes[id] = $"{cells[1]} {cells[4]} {cells[5]}".TrimEnd() + (cells[^1] == "true" ? " straggler" : "") + string.Concat(slow.Where(n => n == id).Select(_ => " slow call"));
        }
        return nodes;
    }
}

/// <summary>A test that needs Debian's Chromium (`apt-get install chromium`): skipped, saying why, where it is missing.</summary>
internal sealed class ChromiumFactAttribute : FactAttribute
{
    public const string Chromium = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(Chromium))
        {
            Skip = $"needs Chromium at {Chromium}: apt-get install chromium";
        }
    }
}
