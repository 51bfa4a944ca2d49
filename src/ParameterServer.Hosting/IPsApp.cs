using Microsoft.Extensions.Logging;
using ParameterServer.Client;

namespace ParameterServer.Hosting;

/// <summary>An application that runs on every worker of a job (counter, logistic regression, ...).</summary>
public interface IPsApp
{
    string Name { get; }

    /// <summary>Runs this worker's part of the job; returns the process exit code (0 for success).</summary>
    Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken);
}

/// <summary>How far a phase of an app has come (0..1), for progress bars.</summary>
public readonly record struct JobProgress(string Phase, double Fraction);

/// <summary>What an app gets on a worker: the client, its rank, a logger, where to print results, where to report progress.</summary>
public sealed class WorkerContext(PsClient client, ILogger log, TextWriter output, bool json, IProgress<JobProgress>? progress = null)
{
    /// <summary>The connected client: tables, push, pull, barriers, work queue.</summary>
    public PsClient Client { get; } = client;

    /// <summary>This worker's rank, 0..WorkerCount-1.</summary>
    public int Rank => Client.Rank;

    /// <summary>Workers in the job.</summary>
    public int WorkerCount => Client.WorkerCount;

    /// <summary>The app's logger (standard error).</summary>
    public ILogger Log { get; } = log;

    /// <summary>Standard output: results and JSON summaries go here, logs go to the logger (standard error).</summary>
    public TextWriter Output { get; } = output;

    /// <summary>True when the user asked for machine-readable output (one JSON object per line).</summary>
    public bool Json { get; } = json;

    /// <summary>Progress of this worker (apps usually report from rank 0 only); the job's status and dashboard see it too.</summary>
    public IProgress<JobProgress> Progress { get; } = new JobProgressTee(progress, client);

    /// <summary>Sends each progress report to where the launcher draws it and to the scheduler (with the worker's report).</summary>
    private sealed class JobProgressTee(IProgress<JobProgress>? local, PsClient client) : IProgress<JobProgress>
    {
        public void Report(JobProgress value)
        {
            local?.Report(value);
            client.Diagnostics.ReportProgress(value.Phase, value.Fraction);
        }
    }
}
