using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Client;
using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// `pserver bench memory`: fills a real server (its own process, 1 copy) with N keys through the normal push path
/// and reports its resident memory, managed heap and bytes per key against the raw bytes (key + row + optimizer state).
/// </summary>
public static class BenchMemory
{
    /// <summary>--keys.</summary>
    public static readonly Option<string> Keys = PsOptions.Create("--keys", "10M", "Keys to store (K, M, G: powers of ten)");

    /// <summary>--width.</summary>
    public static readonly Option<int> Width = PsOptions.Create("--width", 1, "Values per key");

    /// <summary>--handler.</summary>
    public static readonly Option<string> Handler = PsOptions.Create("--handler", "sum", "The table's update handler (sum, ftrl, adagrad, adam ...: its optimizer state is stored beside each row)");

    /// <summary>--dense.</summary>
    public static readonly Option<bool> Dense = PsOptions.Create("--dense", false, "A dense table of keys 0..N-1 instead of N random 64-bit keys");

    private const int Batch = 1 << 16;
    private const int Window = 8;

    public static async Task<int> RunAsync(ParseResult p, CancellationToken ct)
    {
        long keys = ParseCount(p.GetValue(Keys)!);
        int width = p.GetValue(Width);
        string handler = p.GetValue(Handler)!;
        bool dense = p.GetValue(Dense);
        bool json = p.GetValue(PsOptions.Json);
        if (width is < 1 or > 4096)
        {
            throw new ArgumentException($"--width must be in [1, 4096], got {width}");
        }
        int state = UpdateHandlers.Parse(handler).StateLength(width);
        int rawPerKey = (dense ? 0 : sizeof(ulong)) + (sizeof(float) * (width + state));

        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench memory: {keys:N0} {(dense ? "dense" : "random 64-bit")} keys, width {width}, handler {handler} ({state} floats of state per key): raw {rawPerKey} bytes per key"));
        using var children = new ProcessGroup();
        string address = await LocalJob.StartSchedulerAsync(children, 1, 1, ["--replication", "1"], "warning", echo: false, ct);
        var server = children.Start("server", ["server", "--scheduler", address, "--log-level", "warning"], _ => false);
        await using var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = address }, cancellationToken: ct);
        var spec = new TableSpec("memory", width) { Handler = handler, DenseSize = dense ? (ulong)keys : 0 };
        var table = await client.DeclareTableAsync(spec, ct);
        var empty = await ServerMemoryAsync(client, server.Process, ct);

        var watch = Stopwatch.StartNew();
        var batchKeys = new ulong[Window][];
        var values = new float[Batch * width];
        Array.Fill(values, 1f);
        var inFlight = new long[Window];
        long pushed = 0;
        long nextReport = keys / 10;
        for (int slot = 0; pushed < keys; slot = (slot + 1) % Window)
        {
            if (inFlight[slot] != 0)
            {
                await client.WaitAsync(inFlight[slot], ct);
            }
            int n = (int)Math.Min(Batch, keys - pushed);
            var batch = batchKeys[slot] ??= new ulong[Batch];
            for (int i = 0; i < n; i++)
            {
                batch[i] = dense ? (ulong)(pushed + i) : Hashing.Mix64((ulong)(pushed + i) + 0x9E3779B97F4A7C15UL);
            }
            Array.Sort(batch, 0, n);
            inFlight[slot] = table.Push(batch.AsSpan(0, n), values.AsSpan(0, n * width));
            pushed += n;
            if (pushed >= nextReport && !json)
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {pushed:N0} keys pushed ({pushed / watch.Elapsed.TotalSeconds:N0} keys/s)"));
                nextReport += keys / 10;
            }
        }
        foreach (long t in inFlight.Where(t => t != 0))
        {
            await client.WaitAsync(t, ct);
        }
        double seconds = watch.Elapsed.TotalSeconds;
        var full = await ServerMemoryAsync(client, server.Process, ct);
        if (full.Keys != keys)
        {
            throw new PsException(PsErrorCode.Internal, $"the server holds {full.Keys:N0} keys after {keys:N0} were pushed");
        }
        double perKey = (double)full.Rss / keys;
        double grownPerKey = (double)(full.Rss - empty.Rss) / keys;
        var result = new Dictionary<string, object>
        {
            ["bench"] = "memory",
            ["keys"] = keys,
            ["width"] = width,
            ["handler"] = handler,
            ["dense"] = dense,
            ["rss_bytes"] = full.Rss,
            ["peak_rss_bytes"] = full.PeakRss,
            ["empty_rss_bytes"] = empty.Rss,
            ["managed_heap_bytes"] = full.Heap,
            ["table_bytes"] = full.TableBytes,
            ["bytes_per_key"] = Math.Round(perKey, 2),
            ["grown_bytes_per_key"] = Math.Round(grownPerKey, 2),
            ["peak_bytes_per_key"] = Math.Round((double)full.PeakRss / keys, 2),
            ["table_bytes_per_key"] = Math.Round((double)full.TableBytes / keys, 2),
            ["raw_bytes_per_key"] = rawPerKey,
            ["ratio"] = Math.Round(perKey / rawPerKey, 3),
            ["fill_seconds"] = Math.Round(seconds, 2),
            ["keys_per_sec"] = Math.Round(keys / seconds),
        };
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(result));
        }
        else
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"""
                {keys:N0} keys, width {width}, {handler}{(dense ? ", dense" : "")}: filled in {seconds:0.0} s ({keys / seconds:N0} keys/s)
                  server resident  {full.Rss / 1048576.0,10:N1} MiB  {perKey,7:0.0} bytes/key  {perKey / rawPerKey:0.00}x raw ({rawPerKey} bytes: {(dense ? "" : "key + ")}row + state)
                  grown by         {(full.Rss - empty.Rss) / 1048576.0,10:N1} MiB  {grownPerKey,7:0.0} bytes/key  (over the empty server's {empty.Rss / 1048576.0:N1} MiB)
                  peak resident    {full.PeakRss / 1048576.0,10:N1} MiB  {(double)full.PeakRss / keys,7:0.0} bytes/key
                  managed heap     {full.Heap / 1048576.0,10:N1} MiB
                  table arrays     {full.TableBytes / 1048576.0,10:N1} MiB  {(double)full.TableBytes / keys,7:0.0} bytes/key
                """));
        }
        return ExitCodes.Ok;
    }

    private readonly record struct ServerMemory(long Rss, long PeakRss, long Heap, long Keys, long TableBytes);

    /// <summary>The server's resident and peak memory (from /proc), its managed heap and its table's keys and bytes (from its stats).</summary>
    private static async Task<ServerMemory> ServerMemoryAsync(PsClient client, Process server, CancellationToken ct)
    {
        using var stats = JsonDocument.Parse((await client.GetServerStatsAsync(ct)).Single());
        var root = stats.RootElement;
        var process = root.GetProperty("process");
        var table = root.GetProperty("tables").EnumerateArray().Single(t => t.GetProperty("table").GetString() == "memory");
        long rss = 0, peak = 0;
        foreach (string line in File.ReadLines($"/proc/{server.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                rss = Kib(line) * 1024;
            }
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                peak = Kib(line) * 1024;
            }
        }
        return new ServerMemory(rss, peak, process.GetProperty("managed_heap_bytes").GetInt64(), table.GetProperty("keys").GetInt64(), table.GetProperty("bytes").GetInt64());

        static long Kib(string line) => long.Parse(line[(line.IndexOf(':') + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>"10M" = 10,000,000 (K, M, G: powers of ten).</summary>
    public static long ParseCount(string text)
    {
        string t = text.Trim();
        long multiplier = 1;
        if (t.Length > 0 && char.ToUpperInvariant(t[^1]) is 'K' or 'M' or 'G')
        {
            multiplier = char.ToUpperInvariant(t[^1]) switch { 'K' => 1_000, 'M' => 1_000_000, _ => 1_000_000_000 };
            t = t[..^1];
        }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !(value >= 1) || value * multiplier > 1e12)
        {
            throw new ArgumentException($"--keys must be a count like 1M, 10M or 250000, got '{text}'");
        }
        return (long)(value * multiplier);
    }
}
