using System.CommandLine;
using ParameterServer.Apps.Lda;
using ParameterServer.Apps.LogReg;
using ParameterServer.Apps.Mnist;
using ParameterServer.Apps.Sketch;
using ParameterServer.Apps.Yt8m;
using ParameterServer.Bench;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver bench ...`: the commands; the load generators and the chaos soak are in ParameterServer.Bench.</summary>
internal static class BenchCommands
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks: the data plane (kv), training throughput (logreg, mnist), consistency (the paper's Fig. 13)");
        command.Subcommands.Add(LogReg());
        command.Subcommands.Add(Mnist());
        command.Subcommands.Add(Lda());
        command.Subcommands.Add(Sketch());
        command.Subcommands.Add(Yt8mScale());
        command.Subcommands.Add(Consistency());
        command.Subcommands.Add(Traffic());
        command.Subcommands.Add(Kv());
        command.Subcommands.Add(Chaos());
        command.Subcommands.Add(Memory());
        command.Subcommands.Add(Worker());
        command.Subcommands.Add(LoopbackSink());
        command.Subcommands.Add(LoopbackSource());
        return command;
    }

    private static Command LogReg()
    {
        var command = new Command("logreg", "Training throughput of one worker and one server against the same loop with the weights in local memory; with --against liblinear, each solver's objective, accuracy, AUC and time beside liblinear's")
        {
            LogRegAppDefinition.Data, LogRegAppDefinition.Epochs, LogRegAppDefinition.Batch, LogRegAppDefinition.Optimizer, PsOptions.Consistency, BenchTraining.Repeat, PsOptions.Json, BenchTraining.WithMetrics,
            BenchSolvers.Against, LogRegAppDefinition.Test, LogRegAppDefinition.L1, LogRegAppDefinition.L2, LocalCluster.Servers, LocalCluster.Workers,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchTraining.RunLogRegAsync(p, ct)));
        return command;
    }

    private static Command Mnist()
    {
        var command = new Command("mnist", "Downpour SGD on one worker and one server against the same loop in one process, and each step split into compute, fetch and push per --codecs")
        {
            AppOptions.Data, AppOptions.Epochs, AppOptions.Batch, MnistAppDefinition.Model, MnistAppDefinition.TrainLimit, BenchMnist.Codecs, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchMnist.RunAsync(p, ct)));
        return command;
    }

    private static Command Lda()
    {
        var command = new Command("lda", "LightLDA's sampler alone in one process against 1 server x 1 worker on the same corpus (tokens/s)")
        {
            AppOptions.Data, LdaAppDefinition.Vocabulary, LdaAppDefinition.Format, LdaAppDefinition.Alpha, LdaAppDefinition.Beta, LdaAppDefinition.HoldOut, BenchLda.Topics, BenchLda.Iterations, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchLda.RunAsync(p, ct)));
        return command;
    }

    private static Command Memory()
    {
        var command = new Command("memory", "Fills a real server with --keys keys through the push path and reports its resident memory and bytes per key against the raw bytes (key + row + optimizer state)")
        {
            BenchMemory.Keys, BenchMemory.Width, BenchMemory.Handler, BenchMemory.Dense, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchMemory.RunAsync(p, ct)));
        return command;
    }

    private static Command Sketch()
    {
        var command = new Command("sketch", "CountMin inserts in one thread (both layouts) against 1 server x 1 worker on the same Zipf stream (--inserts, --items, --zipf); with --data, a job's accuracy against exact counts")
        {
            BenchSketch.Hitters, PsOptions.Json,
        };
        foreach (var option in new SketchAppDefinition().Options)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchSketch.RunAsync(p, ct)));
        return command;
    }

    private static Command Yt8mScale()
    {
        var command = new Command("yt8m-scale", "yt8m for an epoch on every --servers-list x --workers-list pair, each node on a host of its own (a network namespace) behind a --link-mbit token-bucket link, beside `pserver plan`'s prediction")
        {
            BenchYt8mScale.ServersList, BenchYt8mScale.WorkersList, BenchYt8mScale.LinkMbit, PsOptions.Replication, PsOptions.Consistency, PsOptions.Json,
        };
        var app = new Yt8mAppDefinition();
        foreach (var option in app.Options)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchYt8mScale.RunAsync(p, [.. AppRegistry.Forward(p, app)], ct)));
        return command;
    }

    private static Command Consistency()
    {
        var command = new Command("consistency", "The paper's Fig. 13: time to reach a test log loss, and time spent waiting, for each bounded delay tau; with --solver bpg, time to a target objective for each delay")
        {
            LogRegAppDefinition.Data, LogRegAppDefinition.Test, LogRegAppDefinition.Epochs, LogRegAppDefinition.Batch, LogRegAppDefinition.Optimizer, LocalCluster.Servers, LocalCluster.Workers,
            BenchTraining.Taus, BenchTraining.Target, BenchTraining.Repeat, PsOptions.Json,
            LogRegAppDefinition.Solver, LogRegAppDefinition.Blocks, LogRegAppDefinition.L1, LogRegAppDefinition.L2, LogRegAppDefinition.MaxIterations, LogRegAppDefinition.Tolerance, BenchTraining.TargetObjective,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchTraining.RunConsistencyAsync(p, ct)));
        return command;
    }

    private static Command Traffic()
    {
        var command = new Command("traffic", "Bytes sent by workers and servers with no reduction, key caching, + compression, + KKT filter, + pull filter (the paper's Fig. 11)")
        {
            LogRegAppDefinition.Data, LogRegAppDefinition.Test, LogRegAppDefinition.Epochs, LogRegAppDefinition.Batch, LogRegAppDefinition.L1, LocalCluster.Servers, LocalCluster.Workers, PsOptions.Replication,
            BenchTraffic.Features, BenchTraffic.Rows, BenchTraffic.Compress, BenchTraffic.PullFilter, BenchTraffic.Steps, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => BenchTraffic.RunAsync(p, ct)));
        return command;
    }

    private static Command Kv()
    {
        var command = new Command("kv", "Push / pull throughput and latency on a local cluster of real processes, against the raw loopback limit")
        {
            KvBench.Servers, KvBench.Workers, PsOptions.Json, PsOptions.VirtualNodes, PsOptions.Replication, PsOptions.HeartbeatMs, PsOptions.HeartbeatTimeoutMs, PsOptions.RequestTimeoutS, KvBench.Chunk,
            KvBench.Metrics, KvBench.LinkMbit,
        };
        foreach (var option in KvBench.PlanOptions)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => KvBench.RunAsync(p, ct)));
        return command;
    }

    private static Command Chaos()
    {
        var command = new Command("chaos", "Soak test: a job runs while random processes are killed (scheduler, servers, workers); the counters must stay exact")
        {
            LocalCluster.Servers, LocalCluster.Workers, PsOptions.Replication, ChaosBench.Duration, ChaosBench.KillEvery, ChaosBench.Seed, ChaosBench.Victims, PsOptions.Json,
        };
        command.SetAction((p, ct) => ExitCodes.Guard(() => ChaosBench.RunAsync(p, ct)));
        return command;
    }

    private static Command Worker()
    {
        var command = new Command("worker", "A benchmark worker (started by `bench kv`)") { Hidden = true };
        command.Options.Add(PsOptions.Scheduler);
        command.Options.Add(PsOptions.RequestTimeoutS);
        command.Options.Add(PsOptions.MetricsPort);
        foreach (var option in KvBench.PlanOptions)
        {
            command.Options.Add(option);
        }
        command.SetAction((p, ct) => ExitCodes.Guard(() => KvBench.RunWorkerAsync(p, ct)));
        return command;
    }

    private static Command LoopbackSink()
    {
        var command = new Command("loopback-sink", "Reads one TCP stream to its end as fast as possible (started by `bench kv`)") { KvBench.SinkPort, KvBench.Chunk, KvBench.Span };
        command.Hidden = true;
        command.SetAction(KvBench.RunLoopbackSink);
        return command;
    }

    private static Command LoopbackSource()
    {
        var command = new Command("loopback-source", "Writes one TCP stream as fast as possible (started by `bench kv`)") { KvBench.Target, KvBench.Duration, KvBench.Chunk, KvBench.Span };
        command.Hidden = true;
        command.SetAction(KvBench.RunLoopbackSource);
        return command;
    }
}
