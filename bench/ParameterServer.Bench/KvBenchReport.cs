using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ParameterServer.Bench;

/// <summary>One aggregated measurement: all workers' completions of one case, summed (throughput) and merged (latency).</summary>
public sealed record KvResult(BenchCase Case, int Servers, int Workers, double Gbps, double RequestsPerSec, double P50Us, double P99Us);

/// <summary>The parent side of `pserver bench kv`: collects the workers' lines, aggregates them and prints lines or a table.</summary>
public sealed class KvBenchReport(int servers, int workers)
{
    private readonly Dictionary<(string Op, int Size, int Keys, int Window), List<JsonElement>> _lines = new();
    private readonly Lock _gate = new();

    /// <summary>Takes a worker's result line; returns true when it was one.</summary>
    public bool TryAdd(string line)
    {
        if (!line.StartsWith("{\"bench_worker\"", StringComparison.Ordinal))
        {
            return false;
        }
        var e = JsonDocument.Parse(line).RootElement.Clone();
        var key = (e.GetProperty("op").GetString()!, e.GetProperty("size_bytes").GetInt32(), e.GetProperty("keys_per_request").GetInt32(), e.GetProperty("window").GetInt32());
        lock (_gate)
        {
            if (!_lines.TryGetValue(key, out var list))
            {
                _lines[key] = list = new List<JsonElement>();
            }
            list.Add(e);
        }
        return true;
    }

    /// <summary>The aggregate of a case, or null until every worker reported it.</summary>
    public KvResult? Result(BenchCase c)
    {
        List<JsonElement> lines;
        lock (_gate)
        {
            if (!_lines.TryGetValue((BenchCase.Name(c.Op), c.SizeBytes, c.KeysPerRequest, c.Window), out var list) || list.Count < workers)
            {
                return null;
            }
            lines = list.ToList();
        }
        var histogram = new LatencyHistogram();
        double bytesPerSec = 0;
        double requestsPerSec = 0;
        foreach (var e in lines)
        {
            double seconds = e.GetProperty("seconds").GetDouble();
            bytesPerSec += e.GetProperty("bytes").GetInt64() / seconds;
            requestsPerSec += e.GetProperty("requests").GetInt64() / seconds;
            histogram.Add(e.GetProperty("hist").EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetInt64())));
        }
        return new KvResult(c, servers, workers, bytesPerSec / 1e9, requestsPerSec, histogram.QuantileMicros(0.5), histogram.QuantileMicros(0.99));
    }

    /// <summary>The line `--json` prints for a measurement (the format of issue 4).</summary>
    /// <param name="r">The measurement.</param>
    /// <param name="limitGbps">The loopback limit of the same run.</param>
    /// <param name="bufferLimitGbps">The loopback limit over value-sized buffers, for large values (0: not measured).</param>
    public static string JsonLine(KvResult r, double limitGbps, double bufferLimitGbps = 0)
    {
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"{{\"bench\":\"kv\",\"op\":\"{BenchCase.Name(r.Case.Op)}\",\"size_bytes\":{r.Case.SizeBytes},\"window\":{r.Case.Window},");
        b.Append(CultureInfo.InvariantCulture, $"\"servers\":{r.Servers},\"workers\":{r.Workers},\"gbps\":{Round(r.Gbps, 4)},\"requests_per_sec\":{Round(r.RequestsPerSec, 1)},");
        b.Append(CultureInfo.InvariantCulture, $"\"p50_us\":{Round(r.P50Us, 1)},\"p99_us\":{Round(r.P99Us, 1)},\"limit_gbps\":{Round(limitGbps, 3)},\"fraction_of_limit\":{Round(Fraction(r, limitGbps), 4)}");
        if (bufferLimitGbps > 0)
        {
            b.Append(CultureInfo.InvariantCulture, $",\"buffer_limit_gbps\":{Round(bufferLimitGbps, 3)},\"fraction_of_buffer_limit\":{Round(Fraction(r, bufferLimitGbps), 4)}");
        }
        b.Append('}');
        return b.ToString();
    }

    public static double Fraction(KvResult r, double limitGbps) => limitGbps > 0 ? r.Gbps / limitGbps : 0;

    private static string Round(double value, int digits) => Math.Round(value, digits).ToString("0.####", CultureInfo.InvariantCulture);

    /// <summary>The human table: one row per case, throughput also as a fraction of the loopback limit.</summary>
    public static void WriteTable(TextWriter output, IEnumerable<KvResult> results, double limitGbps, IReadOnlyDictionary<int, double>? bufferLimits = null)
    {
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{"op",-9} {"size",6} {"keys",5} {"window",6} {"GB/s",8} {"of limit",8} {"of buffer",9} {"req/s",10} {"p50 us",9} {"p99 us",9}"));
        foreach (var r in results)
        {
            string ofBuffer = bufferLimits is not null && bufferLimits.TryGetValue(r.Case.SizeBytes, out double b) && b > 0
                ? Fraction(r, b).ToString("0.00", CultureInfo.InvariantCulture) : "-";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{BenchCase.Name(r.Case.Op),-9} {ByteSizes.Format(r.Case.SizeBytes),6} {r.Case.KeysPerRequest,5} {r.Case.Window,6} {r.Gbps,8:0.000} {Fraction(r, limitGbps),8:0.00} {ofBuffer,9} {r.RequestsPerSec,10:0} {r.P50Us,9:0.0} {r.P99Us,9:0.0}"));
        }
    }
}
