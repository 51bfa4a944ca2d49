using Microsoft.Extensions.Logging;
using ParameterServer.Client;

namespace ParameterServer.Hosting;

/// <summary>Runs an app on one worker: connect, run, tell the scheduler the worker finished, disconnect.</summary>
public static class WorkerHost
{
    /// <summary>Connects to the scheduler, runs <paramref name="app"/>, reports this worker finished; returns the app's exit code.</summary>
    public static async Task<int> RunAsync(WorkerOptions options, IPsApp app, ILoggerFactory loggers, TextWriter output, bool json, IProgress<JobProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var log = loggers.CreateLogger(app.Name);
        await using var client = await PsClient.ConnectAsync(options, loggers, cancellationToken).ConfigureAwait(false);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, client.ShutdownRequested);
        int exitCode = await app.RunAsync(new WorkerContext(client, log, output, json, progress), linked.Token).ConfigureAwait(false);
        await client.FinishAsync(cancellationToken).ConfigureAwait(false);
        return exitCode;
    }
}
