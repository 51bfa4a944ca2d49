using ParameterServer.Hosting.Http;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;

namespace ParameterServer.Hosting;

/// <summary>Runs an app on one worker: connect, run, tell the scheduler the worker finished, disconnect.</summary>
public static class WorkerHost
{
    /// <summary>
    /// Connects to the scheduler, runs <paramref name="app"/>, reports this worker finished; returns the app's exit
    /// code. <paramref name="status"/>, when given, is kept up to date for /health (--metrics-port).
    /// </summary>
    public static async Task<int> RunAsync(WorkerOptions options, IPsApp app, ILoggerFactory loggers, TextWriter output, bool json, IProgress<JobProgress>? progress = null, NodeStatus? status = null, CancellationToken cancellationToken = default)
    {
        var log = loggers.CreateLogger(app.Name);
        status ??= new NodeStatus("worker");
        status.Detail = $"waiting for the job to start (scheduler {options.Scheduler})";
        await using var client = await PsClient.ConnectAsync(options, loggers, cancellationToken).ConfigureAwait(false);
        (status.Node, status.Ready, status.Detail) = (client.NodeId, true, $"running {app.Name} as rank {client.Rank} of {client.WorkerCount}");
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, client.ShutdownRequested);
        int exitCode = await app.RunAsync(new WorkerContext(client, log, output, json, progress), linked.Token).ConfigureAwait(false);
        status.Detail = $"{app.Name} finished (exit code {exitCode})";
        await client.FinishAsync(cancellationToken).ConfigureAwait(false);
        return exitCode;
    }
}
