using System.CommandLine;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace ParameterServer.Hosting.Http;

/// <summary>What a node says about itself on /health: alive while it runs, ready once it can do its job. Set by the node as it goes.</summary>
public sealed class NodeStatus(string role)
{
    public string Role { get; } = role;

    /// <summary>The node's id once it registered (-1 before).</summary>
    public int Node { get; set; } = -1;

    public bool Ready { get; set; }

    /// <summary>What it is doing, in words (what it waits for while not ready).</summary>
    public string Detail { get; set; } = "starting";
}

/// <summary>
/// A node's HTTP side, on its own port and threads, off the data path (`--metrics-port`): /metrics in the Prometheus
/// text format (every <see cref="PsMetrics"/> instrument and the runtime's memory and GC), /health, /health/live and
/// /health/ready for orchestrators.
/// </summary>
public sealed class NodeHttp : IAsyncDisposable
{
    private readonly WebApplication _app;

    private NodeHttp(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    /// <summary>The port it listens on (the one asked for, or the one picked for port 0).</summary>
    public int Port { get; }

    /// <summary>The node's /metrics and /health when --metrics-port is given (null otherwise); logs where they are.</summary>
    public static async Task<NodeHttp?> StartIfAskedAsync(ParseResult p, NodeStatus status, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(loggers);
        int port = p.GetResult(PsOptions.MetricsPort) is null ? -1 : p.GetValue(PsOptions.MetricsPort);
        if (port < 0)
        {
            return null;
        }
        string host = p.GetResult(PsOptions.MetricsHost) is null ? "127.0.0.1" : p.GetValue(PsOptions.MetricsHost)!;
        var http = await StartAsync(host, port, status, cancellationToken: cancellationToken).ConfigureAwait(false);
        loggers.CreateLogger(status.Role).LogInformation("Metrics on http://{Host}:{Port}/metrics, health on /health and /health/ready", host, http.Port);
        return http;
    }

    /// <summary>
    /// Starts listening on <paramref name="host"/>:<paramref name="port"/> (0: any free port), with more
    /// <paramref name="routes"/> if given (the scheduler's dashboard). Throws <see cref="IOException"/> naming the
    /// address when it cannot be bound.
    /// </summary>
    public static async Task<NodeHttp> StartAsync(string host, int port, NodeStatus status, Action<IEndpointRouteBuilder>? routes = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(status);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel =>
        {
            var address = host is "0.0.0.0" or "*" ? IPAddress.Any : IPAddress.TryParse(host, out var ip) ? ip : Dns.GetHostAddresses(host)[0];
            kestrel.Listen(address, port);
        });
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("pserver-" + status.Role))
            .WithMetrics(metrics => metrics
            .AddMeter(PsMetrics.MeterName, "System.Runtime")
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        var app = builder.Build();
        app.MapPrometheusScrapingEndpoint();
        app.MapGet("/health", () => Results.Json(new Dictionary<string, object>
        {
            ["role"] = status.Role,
            ["node"] = status.Node,
            ["alive"] = true,
            ["ready"] = status.Ready,
            ["detail"] = status.Detail,
        }));
        routes?.Invoke(app);
        app.MapGet("/health/live", () => Results.Text("alive\n"));
        app.MapGet("/health/ready", () => status.Ready
            ? Results.Text($"ready: {status.Detail}\n")
            : Results.Text($"not ready: {status.Detail}\n", statusCode: StatusCodes.Status503ServiceUnavailable));
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"cannot serve metrics on {host}:{port}: {ex.Message} (choose another --metrics-port, or 0 for any free port)", ex);
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a.Replace("*", "localhost", StringComparison.Ordinal).Replace("+", "localhost", StringComparison.Ordinal)).Port).First();
        return new NodeHttp(app, bound);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
