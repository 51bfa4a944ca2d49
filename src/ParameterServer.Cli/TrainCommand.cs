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
            var command = new Command(app.Name, trainable.TrainDescription)
            {
                LocalCluster.Servers, LocalCluster.Workers, PsOptions.Json, PsOptions.RequestTimeoutS, PsOptions.VirtualNodes, PsOptions.Replication, PsOptions.HeartbeatMs, PsOptions.HeartbeatTimeoutMs,
            };
            foreach (var option in trainable.TrainOptions.Concat([PsOptions.Consistency, PsOptions.KeyCacheMb, PsOptions.PullFilterMb]).Concat(app.Options))
            {
                command.Options.Add(option);
            }
            command.SetAction((p, ct) => ExitCodes.Guard(() => trainable.TrainAsync(p, ct)));
            train.Subcommands.Add(command);
        }
        return train;
    }
}
