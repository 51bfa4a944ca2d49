using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ParameterServer.Client;
using ParameterServer.Hosting;
using ParameterServer.Hosting.Http;
using ParameterServer.Hosting.Network;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench kv`: push / pull throughput and latency of a local cluster of real processes, against the raw
/// loopback limit measured in the same run (and iperf3's, when it is installed). The measuring is done by
/// <see cref="KvBenchApp"/> on the workers and <see cref="LoopbackLimit"/> in two hidden child commands.
/// </summary>
public static partial class KvBench
{
    /// <summary>--servers.</summary>
    public static readonly Option<int> Servers = PsOptions.Create("--servers", 1, "Server processes to start");
    /// <summary>--workers.</summary>
    public static readonly Option<int> Workers = PsOptions.Create("--workers", 1, "Worker processes to start");
    /// <summary>--sizes.</summary>
    public static readonly Option<string> Sizes = PsOptions.Create("--sizes", "4KB,64KB,1MB,16MB", "Value bytes per request (B, KB, MB; binary multiples)");
    /// <summary>--keys-per-request.</summary>
    public static readonly Option<int> KeysPerRequest = PsOptions.Create("--keys-per-request", 1, "Keys each request's values are split over");
    /// <summary>--window.</summary>
    public static readonly Option<string> Windows = PsOptions.Create("--window", "1,8,32", "Requests each worker keeps in flight");
    /// <summary>--ops.</summary>
    public static readonly Option<string> Ops = PsOptions.Create("--ops", "push,pull,pushpull", "Operations to measure for each size");
    /// <summary>--rtt-sizes.</summary>
    public static readonly Option<string> RttSizes = PsOptions.Create("--rtt-sizes", "4B,1KB", "Value sizes of the small-message round trips (one key, push-pull); empty to skip");
    /// <summary>--rtt-window.</summary>
    public static readonly Option<string> RttWindows = PsOptions.Create("--rtt-window", "1,32", "Round trips each worker keeps in flight");
    /// <summary>--duration.</summary>
    public static readonly Option<double> Duration = PsOptions.Create("--duration", 2.0, "Measured seconds per case (each after a warm-up of a quarter of it, at most 0.5 s)");
    /// <summary>--metrics.</summary>
    public static readonly Option<string> Metrics = PsOptions.Create("--metrics", "off", "Nodes serve /metrics while measured: off, on, or both (each case without and then with, and the ratio)");
    /// <summary>--link-mbit.</summary>
    public static readonly Option<int> LinkMbit = PsOptions.Create("--link-mbit", 0,
        "Put every node on a host of its own (a network namespace) behind a token-bucket link of this many Mbit/s each way, instead of loopback (0); figures are then judged against the link");
    /// <summary>--span.</summary>
    public static readonly Option<int> Span = PsOptions.Create("--span", 0, "Loopback limit: bytes of the buffer the calls cycle through (0: one chunk)", hidden: true);

    /// <summary>Values from this size on are also judged against the loopback limit over value-sized buffers (cold memory).</summary>
    private const int BufferLimitFromBytes = 4 << 20;

    /// <summary>--chunk.</summary>
    public static readonly Option<int> Chunk = PsOptions.Create("--chunk", LoopbackLimit.DefaultChunk, "Loopback limit: bytes per send and receive call", hidden: true);
    /// <summary>--port.</summary>
    public static readonly Option<int> SinkPort = PsOptions.Create("--port", 0, "Port to listen on", hidden: true);
    /// <summary>--target.</summary>
    public static readonly Option<string> Target = PsOptions.Create("--target", "127.0.0.1:0", "Where the sink listens", hidden: true);

    /// <summary>The options `bench kv` passes on to its workers.</summary>
    public static IEnumerable<Option> PlanOptions => [Sizes, KeysPerRequest, Windows, Ops, RttSizes, RttWindows, Duration];

    private static KvBenchPlan Plan(ParseResult p) => new()
    {
        Sizes = ByteSizes.ParseList(p.GetValue(Sizes)!),
        KeysPerRequest = p.GetValue(KeysPerRequest),
        Windows = Ints(p.GetValue(Windows)!, "--window"),
        Ops = p.GetValue(Ops)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(BenchCase.ParseOp).ToArray(),
        RttSizes = ByteSizes.ParseList(p.GetValue(RttSizes)!),
        RttWindows = Ints(p.GetValue(RttWindows)!, "--rtt-window"),
        Duration = p.GetValue(Duration),
    };

    private static int[] Ints(string text, string option) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new ArgumentException($"{option} takes whole numbers separated by commas, got '{text}'"))
        .ToArray();

    private static IEnumerable<string> Forward(ParseResult p) =>
    [
        Sizes.Name, p.GetValue(Sizes)!, KeysPerRequest.Name, LocalCluster.Inv(p.GetValue(KeysPerRequest)), Windows.Name, p.GetValue(Windows)!,
        Ops.Name, p.GetValue(Ops)!, RttSizes.Name, p.GetValue(RttSizes)!, RttWindows.Name, p.GetValue(RttWindows)!,
        Duration.Name, p.GetValue(Duration).ToString(CultureInfo.InvariantCulture),
    ];

    /// <summary>`pserver bench kv`: starts the cluster and the workers, measures the loopback limit, prints the results; returns the exit code.</summary>
    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        int servers = p.GetValue(Servers);
        int workers = p.GetValue(Workers);
        if (servers < 1 || workers < 1)
        {
            throw new ArgumentException($"--servers and --workers must be at least 1 (got {servers} and {workers})");
        }
        string mode = p.GetValue(Metrics)!;
        if (mode is not ("off" or "on" or "both"))
        {
            throw new ArgumentException($"--metrics takes off, on or both, not '{mode}'");
        }
        var plan = Plan(p);
        plan.Validate();
        bool json = p.GetValue(PsOptions.Json);
        int chunk = p.GetValue(Chunk);
        string logLevel = p.GetValue(PsOptions.LogLevel) is "info" ? "warning" : p.GetValue(PsOptions.LogLevel)!; // results only, unless asked
        var cases = plan.Cases().ToList();
        await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"bench: {servers} server(s), {workers} worker(s), {cases.Count} cases of {plan.Duration} s (+{plan.Warmup} s warm-up) on {Environment.ProcessorCount} cores"));

        int mbit = p.GetValue(LinkMbit);
        if (mbit < 0 || (mbit > 0 && NetworkLab.Unavailable is not null))
        {
            throw new ArgumentException(mbit < 0 ? $"--link-mbit must be 0 (loopback) or a rate, got {mbit}"
                : $"--link-mbit {mbit} puts every node in a network namespace, which needs root and iproute2 here: {NetworkLab.Unavailable}; run without it for loopback");
        }
        // On loopback the limit is measured before and after the cluster runs; the higher of the two is used (the
        // stricter yardstick). Behind links the limit is the link's rate.
        double limitBefore = mbit > 0 ? mbit / 8000.0 : await LoopbackGbpsAsync(plan.Duration, chunk, ct);
        double? iperf3 = mbit > 0 ? null : await Iperf3.GbpsAsync(plan.Duration, ct);

        // With both, each case is measured without metrics and then with them (every node serving /metrics, its meter
        // listened to): the ratio is what metrics cost on the data path.
        KvBenchReport? withoutMetrics = null;
        if (mode == "both")
        {
            await Console.Error.WriteLineAsync("bench: first without metrics, then with every node serving /metrics");
            var (off, offFailure) = await RunClusterAsync(p, servers, workers, logLevel, cases, metrics: false, mbit, ct);
            if (offFailure is not null)
            {
                return await FailedAsync(offFailure.Value, ct);
            }
            withoutMetrics = off;
        }
        var (report, failure) = await RunClusterAsync(p, servers, workers, logLevel, cases, metrics: mode != "off", mbit, ct);
        if (failure is not null)
        {
            return await FailedAsync(failure.Value, ct);
        }
        double limitAfter = mbit > 0 ? limitBefore : await LoopbackGbpsAsync(plan.Duration, chunk, ct);
        double limit = Math.Max(limitBefore, limitAfter);
        // Large values live in memory no cache holds: the same loop over value-sized buffers shows what memory allows.
        var bufferLimits = new Dictionary<int, double>();
        foreach (int size in cases.Select(c => c.SizeBytes).Where(s => s >= BufferLimitFromBytes && mbit == 0).Distinct())
        {
            bufferLimits[size] = await LoopbackGbpsAsync(plan.Duration, chunk, ct, span: size);
        }

        var results = cases.Select(report.Result).ToList();
        if (results.Any(r => r is null))
        {
            await Console.Error.WriteLineAsync($"bench: the workers reported {results.Count(r => r is not null)} of {cases.Count} cases");
            return ExitCodes.Failed;
        }
        string iperf3Text = iperf3 is { } ip ? string.Create(CultureInfo.InvariantCulture, $"iperf3, one stream: {ip:0.000} GB/s") : "iperf3 not installed";
        string limitLine = mbit > 0
            ? string.Create(CultureInfo.InvariantCulture, $"link limit: every node on a host of its own behind {mbit} Mbit/s each way: {limit:0.000} GB/s")
            : string.Create(CultureInfo.InvariantCulture,
                $"loopback limit (one TCP stream between two processes, {ByteSizes.Format(chunk)} send/recv loop): {limit:0.000} GB/s (before {limitBefore:0.000}, after {limitAfter:0.000}); {iperf3Text}");
        if (json)
        {
            await Console.Error.WriteLineAsync($"bench: {limitLine}");
            foreach (var r in results)
            {
                Console.Out.WriteLine(KvBenchReport.JsonLine(r!, limit, bufferLimits.GetValueOrDefault(r!.Case.SizeBytes)));
            }
        }
        else
        {
            Console.Out.WriteLine($"{servers} server(s) x {workers} worker(s), {plan.Duration.ToString(CultureInfo.InvariantCulture)} s per case, GB/s = 1e9 value bytes per second (push-pull and rtt count both directions)");
            Console.Out.WriteLine(limitLine);
            foreach (var (size, gbps) in bufferLimits)
            {
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"buffer limit for {ByteSizes.Format(size)}: the same loop cycling through {ByteSizes.Format(size)} buffers on both sides: {gbps:0.000} GB/s"));
            }
            KvBenchReport.WriteTable(Console.Out, results!, limit, bufferLimits);
        }
        if (withoutMetrics is not null)
        {
            foreach (var (c, on) in cases.Zip(results))
            {
                var off = withoutMetrics.Result(c)!;
                Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["bench"] = "kv-metrics",
                    ["op"] = BenchCase.Name(c.Op),
                    ["size_bytes"] = c.SizeBytes,
                    ["window"] = c.Window,
                    ["requests_per_sec_off"] = Math.Round(off.RequestsPerSec),
                    ["requests_per_sec_on"] = Math.Round(on!.RequestsPerSec),
                    ["ratio"] = Math.Round(on.RequestsPerSec / Math.Max(off.RequestsPerSec, 1e-9), 3),
                    ["p50_us_off"] = Math.Round(off.P50Us, 1),
                    ["p50_us_on"] = Math.Round(on.P50Us, 1),
                }));
            }
        }
        return ExitCodes.Ok;
    }

    /// <summary>Starts the cluster and the workers, and waits for them to measure every case.</summary>
    private static async Task<(KvBenchReport Report, (string Failure, int Code)? Failure)> RunClusterAsync(ParseResult p, int servers, int workers, string logLevel,
        List<BenchCase> cases, bool metrics, int mbit, CancellationToken ct)
    {
        var report = new KvBenchReport(servers, workers);
        string[] metricsPort = metrics ? ["--metrics-port", "0"] : [];
        (string Failure, int Code)? failure;
        // Behind links: host 0 the scheduler, then the servers, then the workers, each link shaped both ways.
        using var lab = mbit > 0 ? NetworkLab.Create(1 + servers + workers) : null;
        foreach (var host in lab?.Hosts ?? [])
        {
            lab!.Slow(host, delayMs: 0, megabits: mbit, lossPercent: 0);
        }
        using (var children = new ProcessGroup())
        {
            void Start(int host, string name, string[] arguments, Func<string, bool>? onLine = null)
            {
                if (lab is null)
                {
                    children.Start(name, arguments, onLine);
                }
                else
                {
                    // A server listens on its host's address; a worker only connects out.
                    children.StartOn(lab.Hosts[host], name, arguments[0] == "server" ? [.. arguments, "--host", lab.Hosts[host].Address] : arguments, onLine);
                }
            }
            try
            {
                string address = await LocalCluster.StartSchedulerOnAsync(children, lab?.Hosts[0], servers, workers, p, logLevel, echo: false, ct, metricsPort);
                for (int i = 0; i < servers; i++)
                {
                    Start(1 + i, $"server {i}", ["server", "--scheduler", address, "--log-level", logLevel, .. metricsPort]);
                }
                for (int i = 0; i < workers; i++)
                {
                    Start(1 + servers + i, $"worker {i}",
                        ["bench", "worker", "--scheduler", address, "--log-level", logLevel, "--request-timeout", LocalCluster.Inv(p.GetValue(PsOptions.RequestTimeoutS)), .. metricsPort, .. Forward(p)],
                        line => !report.TryAdd(line) || Progress(report, cases, line));
                }
                failure = await children.WaitAllAsync(ct);
            }
            finally
            {
                children.Kill();
            }
            await children.DrainAsync();
        }
        return (report, failure);
    }

    private static async Task<int> FailedAsync((string Failure, int Code) failure, CancellationToken ct)
    {
        if (ct.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("bench: interrupted; all nodes stopped");
            return ExitCodes.Interrupted;
        }
        await Console.Error.WriteLineAsync($"bench: {failure.Failure}; stopped the other nodes");
        return failure.Code;
    }

    /// <summary>Prints one line on standard error when a case has all its workers' results; the line is not echoed.</summary>
    private static bool Progress(KvBenchReport report, List<BenchCase> cases, string line)
    {
        using var doc = JsonDocument.Parse(line);
        var e = doc.RootElement;
        var c = cases.FirstOrDefault(c => BenchCase.Name(c.Op) == e.GetProperty("op").GetString() && c.SizeBytes == e.GetProperty("size_bytes").GetInt32() && c.Window == e.GetProperty("window").GetInt32());
        if (c is not null && report.Result(c) is { } r)
        {
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"bench: {BenchCase.Name(c.Op)} {ByteSizes.Format(c.SizeBytes)} window {c.Window}: {r.Gbps:0.000} GB/s, {r.RequestsPerSec:0} requests/s, p50 {r.P50Us:0.0} us, p99 {r.P99Us:0.0} us"));
        }
        return false;
    }

    /// <summary>The raw loopback limit in GB/s: a hidden sink and source pair of processes, one TCP stream.</summary>
    private static async Task<double> LoopbackGbpsAsync(double seconds, int chunk, CancellationToken ct, int span = 0)
    {
        using var pair = new ProcessGroup();
        var port = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        double? gbps = null;
        pair.Start("loopback sink", ["bench", "loopback-sink", "--port", "0", "--chunk", LocalCluster.Inv(chunk), "--span", LocalCluster.Inv(span)], line =>
        {
            if (SinkListening().Match(line) is { Success: true } m)
            {
                port.TrySetResult(m.Groups[1].Value);
            }
            else if (line.StartsWith("{\"loopback_bytes\"", StringComparison.Ordinal))
            {
                using var doc = JsonDocument.Parse(line);
                gbps = doc.RootElement.GetProperty("loopback_bytes").GetInt64() / doc.RootElement.GetProperty("seconds").GetDouble() / 1e9;
            }
            return false;
        });
        string sinkPort = await port.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
        pair.Start("loopback source",
            ["bench", "loopback-source", "--target", $"127.0.0.1:{sinkPort}", "--duration", seconds.ToString(CultureInfo.InvariantCulture), "--chunk", LocalCluster.Inv(chunk), "--span", LocalCluster.Inv(span)]);
        if (await pair.WaitAllAsync(ct) is { } failure)
        {
            throw new PsException(PsErrorCode.Internal, $"the loopback limit could not be measured: {failure.Failure}");
        }
        await pair.DrainAsync();
        return gbps ?? throw new PsException(PsErrorCode.Internal, "the loopback sink reported no result");
    }

    /// <summary>`pserver bench worker` (hidden, started by `bench kv`): runs <see cref="KvBenchApp"/> on one worker.</summary>
    public static async Task<int> RunWorkerAsync(ParseResult p, CancellationToken ct)
    {
        using var loggers = Logging.Create(p.GetValue(PsOptions.LogLevel)!);
        var options = new WorkerOptions
        {
            Scheduler = p.GetValue(PsOptions.Scheduler)!,
            RequestTimeout = TimeSpan.FromSeconds(p.GetValue(PsOptions.RequestTimeoutS)),
        };
        var status = new NodeStatus("worker");
        await using var http = await NodeHttp.StartIfAskedAsync(p, status, loggers, ct);
        return await WorkerHost.RunAsync(options, new KvBenchApp(Plan(p)), loggers, Console.Out, json: true, status: status, cancellationToken: ct);
    }

    /// <summary>`pserver bench loopback-sink` (hidden): reads one TCP stream to its end, then prints the bytes and seconds.</summary>
    public static int RunLoopbackSink(ParseResult p)
    {
        using var listener = LoopbackLimit.Listen(p.GetValue(SinkPort));
        Console.Out.WriteLine($"loopback sink listening on {((System.Net.IPEndPoint)listener.LocalEndPoint!).Port}");
        Console.Out.Flush();
        var (bytes, seconds) = LoopbackLimit.RunSink(listener, p.GetValue(Chunk), p.GetValue(Span));
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"loopback_bytes\":{bytes},\"seconds\":{seconds}}}"));
        return ExitCodes.Ok;
    }

    /// <summary>`pserver bench loopback-source` (hidden): writes one TCP stream for --duration seconds.</summary>
    public static int RunLoopbackSource(ParseResult p)
    {
        string target = p.GetValue(Target)!;
        int colon = target.LastIndexOf(':');
        LoopbackLimit.RunSource(target[..colon], int.Parse(target[(colon + 1)..], CultureInfo.InvariantCulture), p.GetValue(Duration), p.GetValue(Chunk), p.GetValue(Span));
        return ExitCodes.Ok;
    }

    [GeneratedRegex(@"^loopback sink listening on (\d+)$")]
    private static partial Regex SinkListening();
}
