using System.CommandLine;
using System.Text.Json;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>
/// `pserver local`: a whole job on this machine as real processes, every node's output prefixed with its
/// name. With --json, the app may print one more line that sums up the workers' results.
/// </summary>
internal static class LocalCommand
{
    public static Command Create()
    {
        var command = new Command("local", "Start a local cluster (scheduler, servers, workers as child processes on 127.0.0.1) and run an app")
        {
            LocalCluster.Servers, LocalCluster.Workers, PsOptions.Json, PsOptions.VirtualNodes, PsOptions.Replication, PsOptions.HeartbeatMs, PsOptions.HeartbeatTimeoutMs, PsOptions.RequestTimeoutS,
            PsOptions.CheckpointDir, PsOptions.CheckpointEvery, PsOptions.Restore, PsOptions.OnWorkerFailure, PsOptions.BackupAfter, PsOptions.KeyCacheMb, PsOptions.PullFilterMb, PsOptions.MaxMemoryMb, PsOptions.MetricsPort, PsOptions.Trace, PsOptions.TraceSteps,
            LocalCluster.DashboardPort,
        };
        foreach (var option in AppRegistry.AllOptions)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            AppRegistry.Create(p); // validate the app options here, not in every worker
            PsOptions.CheckRestore(p);
            PsOptions.ParseWorkerFailure(p);
            bool json = p.GetValue(PsOptions.Json);
            var spec = LocalCluster.Spec(p, AppRegistry.Forward(p), json);
            var result = await LocalJob.RunAsync(spec, ct);
            if (result.Failure is not null)
            {
                await Console.Error.WriteLineAsync($"local: {result.Failure}");
                return result.ExitCode;
            }
            if (!json)
            {
                Console.Out.WriteLine($"local: all {spec.Workers} workers finished");
                return ExitCodes.Ok;
            }
            var results = result.WorkerLines.Where(l => l.StartsWith("{\"app\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            return AppRegistry.Find(p.GetValue(AppRegistry.App)!).SummarizeLocal(results, spec.Workers, Console.Out);
        }));
        return command;
    }
}
