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
/// /health/ready for orchestrators. In a job with a secret every endpoint but /health/live and /health/ready needs
/// the job's read-only token (<see cref="ParameterServer.Transport.JobSecret.ReadTokenOf"/>): as a bearer token, or
/// once as ?token=, which a browser keeps as a cookie.
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
        byte[]? secret = ParameterServer.Transport.JobSecret.FromEnvironment();
        if (secret is null && !Settings.Get(PsOptions.Insecure.Name, false) && !IsLoopback(host))
        {
            throw new ArgumentException($"refusing to serve HTTP on {host}:{port} without authentication: anyone who reaches it could read the job's status and metrics. Give the node --secret-file (its HTTP side then needs the job's read-only token), or say --insecure");
        }
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
        if (secret is not null)
        {
            var token = ParameterServer.Transport.JobSecret.ReadTokenOf(secret);
            app.Use((context, next) => RequireToken(context, next, token));
        }
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

    private const string TokenCookie = "pserver_token";

    /// <summary>Lets a request through with the token (bearer header, cookie, or ?token= once, which sets the cookie); probes need none.</summary>
    private static Task RequireToken(HttpContext context, RequestDelegate next, byte[] token)
    {
        var path = context.Request.Path;
        if (path.Equals("/health/live", StringComparison.Ordinal) || path.Equals("/health/ready", StringComparison.Ordinal))
        {
            return next(context); // orchestrators' probes: they say alive or ready, nothing more
        }
        if (context.Request.Query.TryGetValue("token", out var query) && Matches(query.ToString(), token))
        {
            context.Response.Cookies.Append(TokenCookie, query.ToString(), new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/" });
            context.Response.Redirect(path.HasValue ? path.Value! : "/"); // the token leaves the address bar (and the history)
            return Task.CompletedTask;
        }
        string authorization = context.Request.Headers.Authorization.ToString();
        string? presented = authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization[7..].Trim()
            : context.Request.Cookies.TryGetValue(TokenCookie, out var cookie) ? cookie : null;
        if (presented is not null && Matches(presented, token))
        {
            return next(context);
        }
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = "Bearer";
        return context.Response.WriteAsync("this job's HTTP endpoints need its read-only token: make it with `pserver secret --read-token --secret-file SECRET --out FILE`, then send 'Authorization: Bearer TOKEN' (Prometheus: authorization.credentials_file), or open the dashboard once with ?token=TOKEN\n");
    }

    private static bool Matches(string presented, byte[] token)
    {
        Span<byte> bytes = stackalloc byte[64];
        return presented.Length == token.Length && System.Text.Encoding.ASCII.GetBytes(presented, bytes) == token.Length
            && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(bytes[..token.Length], token);
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
