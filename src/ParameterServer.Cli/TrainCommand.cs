using System.CommandLine;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver train NAME`: every app that can train (<see cref="IPsTrainable"/>) on a local cluster, results on standard output.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var train = new Command("train", "Train a model on a local cluster");
        foreach (var app in AppRegistry.Apps)
        {
            if (app is not IPsTrainable trainable)
            {
                continue;
            }
            train.Subcommands.Add(ForApp(app, trainable, app.Name, trainable.TrainDescription));
        }
        return train;
    }

    /// <summary>A command that runs <paramref name="trainable"/> on a local cluster: the launcher's options and the app's.</summary>
    public static Command ForApp(IPsAppDefinition app, IPsTrainable trainable, string name, string description)
    {
        var command = new Command(name, description)
        {
            LocalCluster.Servers, LocalCluster.Workers, PsOptions.Json, PsOptions.RequestTimeoutS, PsOptions.VirtualNodes, PsOptions.Replication, PsOptions.HeartbeatMs, PsOptions.HeartbeatTimeoutMs,
        };
        foreach (var option in trainable.TrainOptions.Concat([PsOptions.Consistency, PsOptions.KeyCacheMb, PsOptions.PullFilterMb, PsOptions.MaxMemoryMb, PsOptions.MetricsPort, PsOptions.DashboardPort, PsOptions.Trace, PsOptions.TraceSteps]).Concat(app.Options))
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => trainable.TrainAsync(p, ct)));
        return command;
    }
}
