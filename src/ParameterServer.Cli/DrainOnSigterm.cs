using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>
/// A server's or worker's answer to SIGTERM: it asks its scheduler to drain it (a server's ranges are copied to their
/// new owners, a worker hands its remaining work back), and exits when the scheduler lets it go. Not drained within
/// the grace period (--drain-timeout), or a second SIGTERM: it stops at once.
/// </summary>
internal static class DrainOnSigterm
{
    public static readonly System.CommandLine.Option<int> DrainTimeoutS = PsOptions.Create("--drain-timeout", 25,
        "Seconds a SIGTERM'd server or worker may take to drain (its ranges move, or its work goes back) before it stops at once; keep it under Kubernetes' terminationGracePeriodSeconds (30)");

    /// <summary>Registers the drain for the first SIGTERM (until disposed); <paramref name="nodeId"/> is -1 until registered.</summary>
    public static IDisposable Register(string scheduler, string role, Func<int> nodeId, TimeSpan grace, ILogger log) =>
        Termination.OnFirstSigterm(() =>
        {
            int id = nodeId();
            if (id < 0)
            {
                log.LogWarning("SIGTERM before this {Role} registered: stopping", role);
                Termination.Stop();
                return;
            }
            log.LogWarning("SIGTERM: draining {Role} {Id}, for up to {Seconds} s (--drain-timeout); a second SIGTERM stops at once", role, id, grace.TotalSeconds);
            _ = Task.Run(async () =>
            {
                try
                {
                    string answer = await ClusterAdmin.DrainAsync(scheduler, id).ConfigureAwait(false);
                    log.LogInformation("The scheduler: {Answer}", answer);
                }
                catch (PsException ex)
                {
                    log.LogError("Cannot drain {Role} {Id}: {Message}; stopping now", role, id, ex.Message);
                    Termination.Stop();
                    return;
                }
                await Task.Delay(grace).ConfigureAwait(false);
                log.LogError("{Role} {Id} was not drained within {Seconds} s (--drain-timeout): stopping now", role, id, grace.TotalSeconds);
                Termination.Stop();
            });
        });
}
