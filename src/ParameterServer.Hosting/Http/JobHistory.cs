using System.Text.Json;
using ParameterServer.Client;

namespace ParameterServer.Hosting.Http;

// Room: the dashboard's memory. Samples the job's status once a second on the scheduler's side, so that a page
// opened late (or reloaded) still draws the last ten minutes: bytes per second through the servers, each node's
// bytes per second, each worker's time per step and loss, each server's answer time as the workers see it.

/// <summary>The last ten minutes of the job, one sample a second, for the dashboard's plots.</summary>
internal sealed class JobHistory
{
    private const int Capacity = 600;
    /// <summary>Nodes publish their traffic counters about once a second: rates span at least this long.</summary>
    private const long RateSpanMs = 2000;

    private readonly Lock _lock = new();
    private readonly Queue<Sample> _samples = new();

    private sealed record Sample(long UnixMs, Dictionary<int, (long Sent, long Received)> Totals, string Json);

    /// <summary>Samples the status every second until <paramref name="stopping"/>; a failed status is skipped.</summary>
    public async Task RunAsync(string scheduler, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        do
        {
            try
            {
                var status = await ClusterAdmin.StatusAsync(scheduler, TimeSpan.FromSeconds(5), stopping).ConfigureAwait(false);
                using var doc = JsonDocument.Parse(status.ToJson());
                Add(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), doc.RootElement);
            }
            catch (Exception ex) when (ex is PsException or IOException or TimeoutException)
            {
                // The scheduler is busy or restarting: the plot has a gap, the page says what /api/job says.
            }
        }
        while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false));
    }

    /// <summary>Adds a sample of a status (what `pserver status --json` prints) taken at <paramref name="unixMs"/>.</summary>
    public void Add(long unixMs, JsonElement status)
    {
        var totals = new Dictionary<int, (long, long)>();
        foreach (var t in status.GetProperty("traffic").EnumerateObject())
        {
            totals[int.Parse(t.Name, System.Globalization.CultureInfo.InvariantCulture)] = (t.Value.GetProperty("bytes_sent").GetInt64(), t.Value.GetProperty("bytes_received").GetInt64());
        }
        lock (_lock)
        {
            // The base for rates: the newest sample at least RateSpanMs old (or the oldest there is).
            Sample? based = null;
            foreach (var s in _samples)
            {
                if (unixMs - s.UnixMs < RateSpanMs)
                {
                    break;
                }
                based = s;
            }
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteNumber("t", unixMs);
                double through = 0;
                w.WriteStartObject("nodes");
                foreach (var n in status.GetProperty("nodes").EnumerateArray())
                {
                    int id = n.GetProperty("id").GetInt32();
                    if (!n.GetProperty("alive").GetBoolean())
                    {
                        continue;
                    }
                    w.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    if (based is not null && totals.TryGetValue(id, out var now) && based.Totals.TryGetValue(id, out var before))
                    {
                        double seconds = (unixMs - based.UnixMs) / 1000.0;
                        double sent = (now.Item1 - before.Sent) / seconds, received = (now.Item2 - before.Received) / seconds;
                        w.WriteNumber("sent_s", Math.Round(sent));
                        w.WriteNumber("received_s", Math.Round(received));
                        if (n.GetProperty("role").GetString() == "server")
                        {
                            through += sent + received;
                        }
                    }
                    if (n.GetProperty("progress") is { ValueKind: JsonValueKind.Object } progress)
                    {
                        Copy(w, progress, "step_ms", "step_ms");
                        Copy(w, progress, "loss", "loss");
                    }
                    Copy(w, n, "answer_ms", "answer_ms");
                    w.WriteEndObject();
                }
                w.WriteEndObject();
                w.WriteNumber("servers_bytes_s", Math.Round(through));
                w.WriteEndObject();
            }
            _samples.Enqueue(new Sample(unixMs, totals, System.Text.Encoding.UTF8.GetString(buffer.ToArray())));
            if (_samples.Count > Capacity)
            {
                _samples.Dequeue();
            }
        }
    }

    private static void Copy(Utf8JsonWriter w, JsonElement from, string property, string name)
    {
        if (from.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.Number)
        {
            w.WriteNumber(name, value.GetDouble());
        }
    }

    /// <summary>Writes the samples taken after <paramref name="sinceUnixMs"/> as a JSON array, oldest first.</summary>
    public void WriteSince(Utf8JsonWriter w, long sinceUnixMs)
    {
        w.WriteStartArray();
        lock (_lock)
        {
            foreach (var s in _samples)
            {
                if (s.UnixMs > sinceUnixMs)
                {
                    w.WriteRawValue(s.Json);
                }
            }
        }
        w.WriteEndArray();
    }
}
