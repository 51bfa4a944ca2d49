using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using ParameterServer.Client;
using ParameterServer.Scheduler;

namespace ParameterServer.Hosting.Http;

/// <summary>
/// The job's dashboard, on the scheduler's HTTP side: the page and its script (embedded: no CDN, machines may have no
/// internet), and /api/job, which is the status `pserver status --json` prints (asked of this scheduler the same way)
/// with the job's events and the time.
/// </summary>
public static class Dashboard
{
    private static readonly Dictionary<string, (string ContentType, byte[] Body)> Files = new()
    {
        ["/"] = ("text/html; charset=utf-8", Read("index.html")),
        ["/dashboard.js"] = ("text/javascript; charset=utf-8", Read("dashboard.js")),
        ["/dashboard.css"] = ("text/css; charset=utf-8", Read("dashboard.css")),
    };

    /// <summary>Adds the dashboard's routes for the scheduler at <paramref name="schedulerAddress"/> (HOST:PORT).</summary>
    public static void Map(IEndpointRouteBuilder routes, string schedulerAddress, SchedulerNode scheduler)
    {
        ArgumentNullException.ThrowIfNull(routes);
        ArgumentNullException.ThrowIfNull(scheduler);
        foreach (var (path, (type, body)) in Files)
        {
            routes.MapGet(path, () => Results.Bytes(body, type));
        }
        var history = new JobHistory();
        var stopping = routes.ServiceProvider.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        _ = Task.Run(() => history.RunAsync(schedulerAddress, stopping), stopping);
        // since: the time of the last history sample the page has (Unix ms); only newer ones are sent.
        routes.MapGet("/api/job", async (long? since, CancellationToken ct) =>
        {
            ClusterStatus status;
            try
            {
                status = await ClusterAdmin.StatusAsync(schedulerAddress, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
            }
            catch (PsException ex)
            {
                return Results.Text($"the scheduler at {schedulerAddress} did not answer: {ex.Message}", statusCode: StatusCodes.Status503ServiceUnavailable);
            }
            return Results.Text(Json(status, scheduler.Events, history, since ?? 0), "application/json; charset=utf-8");
        });
    }

    private static string Json(ClusterStatus status, IReadOnlyList<JobEvent> events, JobHistory history, long since)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("time_ms", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            w.WritePropertyName("status");
            w.WriteRawValue(status.ToJson());
            w.WriteStartArray("events");
            foreach (var e in events)
            {
                w.WriteStartObject();
                w.WriteNumber("unix_ms", e.UnixMs);
                w.WriteString("kind", e.Kind);
                w.WriteString("text", e.Text);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WritePropertyName("history");
            history.WriteSince(w, since);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static byte[] Read(string name)
    {
        using var stream = typeof(Dashboard).Assembly.GetManifestResourceStream("ParameterServer.Hosting.Dashboard." + name)
            ?? throw new InvalidOperationException($"the dashboard's {name} is not embedded in {typeof(Dashboard).Assembly.GetName().Name}");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
