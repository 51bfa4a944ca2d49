using System.CommandLine;
using ParameterServer.Scheduler;

namespace ParameterServer.Hosting;

/// <summary>The options nodes and launchers share, and the factory of every option: every option can also come from PS_* variables and the config file (see <see cref="Settings"/>).</summary>
public static class PsOptions
{
    /// <summary>An option whose default comes from PS_NAME, then the --config file, then <paramref name="fallback"/> (the command line wins over all).</summary>
    public static Option<T> Create<T>(string name, T fallback, string description, bool hidden = false)
    {
        return new Option<T>(name)
        {
            Description = $"{description} [env {Settings.EnvironmentName(name)}]",
            DefaultValueFactory = _ => Settings.Get(name, fallback),
            Hidden = hidden,
        };
    }

    /// <summary>--scheduler.</summary>
    public static readonly Option<string> Scheduler = Create("--scheduler", "127.0.0.1:9700", "The scheduler as HOST:PORT");

    /// <summary>--consistency: how far a worker's pushes may run ahead (every app's tables use it).</summary>
    public static readonly Option<string> Consistency = Create("--consistency", "bounded:4", "sequential, eventual or bounded:TAU");

    /// <summary>--json.</summary>
    public static readonly Option<bool> Json = Create("--json", false, "Print machine-readable JSON lines on standard output");

    /// <summary>--log-level.</summary>
    public static readonly Option<string> LogLevel = Create("--log-level", "info", "Log level: trace, debug, info, warning, error");

    /// <summary>--config.</summary>
    public static readonly Option<string?> Config = Create<string?>("--config", null, "JSON file with option values (keys are option names without dashes)");

    /// <summary>--secret-file (every command: nodes prove it to each other, tools to the scheduler).</summary>
    public static readonly Option<string?> SecretFile = Create<string?>("--secret-file", null, "The job's shared secret (a file of 16 bytes or more, made by `pserver secret`): every connection starts with a mutual HMAC-SHA256 challenge-response over it; `pserver local` and `train` make one for their job");

    /// <summary>--token-file (tools): the job's read-only token instead of the secret.</summary>
    public static readonly Option<string?> TokenFile = Create<string?>("--token-file", null, "The job's read-only token (`pserver secret --read-token` derives it from the secret): tools may look (status, dashboard, /metrics), not change anything");

    /// <summary>--insecure.</summary>
    public static readonly Option<bool> Insecure = Create("--insecure", false, "Listen on a non-loopback address without --secret-file: anyone who reaches the port can read and change the model");

    /// <summary>--tls (every command): encrypt every connection; a local job without --tls-cert makes a throwaway job certificate.</summary>
    public static readonly Option<bool> Tls = Create("--tls", false, "Encrypt every connection with TLS; a job started here (local, train, bench) makes a throwaway certificate, nodes started on their own need --tls-cert and --tls-key");

    /// <summary>--tls-cert.</summary>
    public static readonly Option<string?> TlsCert = Create<string?>("--tls-cert", null, "This node's TLS certificate (PEM; `pserver tls-cert --out DIR` makes a job certificate): implies --tls");

    /// <summary>--tls-key.</summary>
    public static readonly Option<string?> TlsKey = Create<string?>("--tls-key", null, "The private key of --tls-cert (PEM; not needed when the certificate file holds it)");

    /// <summary>--tls-ca.</summary>
    public static readonly Option<string?> TlsCa = Create<string?>("--tls-ca", null, "Trust peers whose certificates chain to these CA certificates (PEM; default: --tls-cert itself, a self-signed job certificate)");

    /// <summary>--tls-client-certs.</summary>
    public static readonly Option<bool> TlsClientCerts = Create("--tls-client-certs", false, "Accept only peers that present a certificate from the trusted CA (mutual TLS); every node presents its own anyway");

    /// <summary>The TLS options every command takes (recursive on the root command).</summary>
    public static IReadOnlyList<Option> TlsOptions => [Tls, TlsCert, TlsKey, TlsCa, TlsClientCerts];

    /// <summary>--heartbeat-ms.</summary>
    public static readonly Option<int> HeartbeatMs = Create("--heartbeat-ms", 100, "Heartbeat interval in milliseconds");

    /// <summary>--heartbeat-timeout-ms.</summary>
    public static readonly Option<int> HeartbeatTimeoutMs = Create("--heartbeat-timeout-ms", 800, "Silence after which a node is declared dead, in milliseconds");

    /// <summary>--request-timeout.</summary>
    public static readonly Option<int> RequestTimeoutS = Create("--request-timeout", 30, "Seconds a push or pull may wait for its servers");

    /// <summary>--virtual-nodes.</summary>
    public static readonly Option<int> VirtualNodes = Create("--virtual-nodes", 256, "Points per server on the consistent-hash ring");

    /// <summary>--replication.</summary>
    public static readonly Option<int> Replication = Create("--replication", 0, "Copies of each key range: a primary and its successors on the ring; a push is acknowledged once all have it (0: 2 with at least 2 servers, else 1)");

    /// <summary>--checkpoint-dir.</summary>
    public static readonly Option<string?> CheckpointDir = Create<string?>("--checkpoint-dir", null, "Write checkpoints here (a folder per epoch; shared storage when servers run on many machines)");

    /// <summary>--checkpoint-every.</summary>
    public static readonly Option<double> CheckpointEvery = Create("--checkpoint-every", 0.0, "Seconds between checkpoints while the job runs (0: only one, when every worker has finished)");

    /// <summary>--restore.</summary>
    public static readonly Option<string?> Restore = Create<string?>("--restore", null, "Resume from a checkpoint: a checkpoint directory (its newest complete epoch) or one epoch folder");

    /// <summary>Verifies --restore before any node starts: a corrupted checkpoint is a usage error naming the file.</summary>
    public static void CheckRestore(ParseResult p)
    {
        if (p.GetValue(Restore) is { } restore)
        {
            try
            {
                Core.Checkpoints.CheckpointReport.Check(restore);
            }
            catch (PsException ex)
            {
                throw new ArgumentException(ex.Message, ex);
            }
        }
        if (p.GetValue(CheckpointEvery) is var every && (every < 0 || (every > 0 && p.GetValue(CheckpointDir) is null)))
        {
            throw new ArgumentException("--checkpoint-every needs a value >= 0 and a --checkpoint-dir");
        }
    }

    /// <summary>The checkpoint options a launcher passes to its scheduler (paths absolute).</summary>
    public static string[] CheckpointArguments(ParseResult p) =>
    [
        .. p.GetValue(CheckpointDir) is { } dir ? new[] { "--checkpoint-dir", Path.GetFullPath(dir) } : [],
        .. p.GetValue(CheckpointEvery) is > 0 and var every ? new[] { "--checkpoint-every", every.ToString(System.Globalization.CultureInfo.InvariantCulture) } : [],
        .. p.GetValue(Restore) is { } restore ? new[] { "--restore", Path.GetFullPath(restore) } : [],
    ];

    /// <summary>--on-worker-failure.</summary>
    public static readonly Option<string> OnWorkerFailure = Create("--on-worker-failure", "reassign", "What happens to the work units a dead worker had not finished: reassign (to the other workers) or drop");

    /// <summary>--backup-after.</summary>
    public static readonly Option<double> BackupAfter = Create("--backup-after", 0.0, "Seconds after which a slow worker's unit is also given to an idle worker, first result wins (0: never)");

    /// <summary>--on-worker-failure as a policy; throws <see cref="ArgumentException"/> for another word.</summary>
    public static WorkerFailurePolicy ParseWorkerFailure(ParseResult p) => p.GetValue(OnWorkerFailure) switch
    {
        "reassign" => WorkerFailurePolicy.Reassign,
        "drop" => WorkerFailurePolicy.Drop,
        var other => throw new ArgumentException($"--on-worker-failure must be reassign or drop, not '{other}'"),
    };

    /// <summary>The work-queue options for a scheduler started by a launcher (commands without them pass none).</summary>
    public static string[] WorkArguments(ParseResult p) =>
    [
        .. p.GetValue(OnWorkerFailure) is { } policy ? new[] { "--on-worker-failure", policy } : [],
        .. p.GetValue(BackupAfter) is > 0 and var after ? new[] { "--backup-after", after.ToString(System.Globalization.CultureInfo.InvariantCulture) } : [],
    ];

    /// <summary>--state-dir.</summary>
    public static readonly Option<string?> StateDir = Create<string?>("--state-dir", null, "Keep the scheduler's metadata here; restarted on the same port with the same directory, it resumes the job");

    /// <summary>--max-frame-mb.</summary>
    public static readonly Option<int> MaxFrameMb = Create("--max-frame-mb", 512, "Largest frame accepted, in MiB");

    /// <summary>--frame-timeout.</summary>
    public static readonly Option<double> FrameTimeoutS = Create("--frame-timeout", 10.0, "Seconds a peer has to finish a frame it started, plus 1 s per MiB of it; then its connection is closed (slow senders)");

    /// <summary>--max-connections-per-address.</summary>
    public static readonly Option<int> MaxConnectionsPerAddress = Create("--max-connections-per-address", 256, "Connections one remote address may hold open to this node; more are closed at once");

    /// <summary>--key-cache-mb.</summary>
    public static readonly Option<double> KeyCacheMb = Create("--key-cache-mb", 64.0, "Servers: MiB of key lists kept per worker connection for key caching (least recently used dropped first)");

    /// <summary>--pull-filter-mb.</summary>
    public static readonly Option<double> PullFilterMb = Create("--pull-filter-mb", 256.0, "Servers: MiB of rows remembered per worker connection and table for pull filters");

    /// <summary>--max-memory-mb.</summary>
    public static readonly Option<int> MetricsPort = Create("--metrics-port", -1, "Serve /metrics (Prometheus) and /health on this port (0: any free port; -1: off)");
    public static readonly Option<string> MetricsHost = Create("--metrics-host", "127.0.0.1", "Address for --metrics-port and --dashboard-port (0.0.0.0 for all interfaces)");
    public static readonly Option<int> DashboardPort = Create("--dashboard-port", -1, "Scheduler: serve the job's dashboard (and /metrics, /health) on this port (0: any free port; -1: off)");
    public static readonly Option<string> JobId = Create("--job-id", "default", "The job's name: a scheduler refuses servers and workers started for another job (nodes without it join any); with --etcd its keys are /pserver/NAME/...");
    public static readonly Option<string?> Trace = Create<string?>("--trace", null, "Write a Chrome trace (trace-event JSON) of push, pull, step and server spans to FILE; open it in chrome://tracing or ui.perfetto.dev");
    public static readonly Option<string> TraceSteps = Create("--trace-steps", "10-20", "The steps (batches) of each worker's app that --trace records: FROM-TO, TO excluded");
    public static readonly Option<double> MaxMemoryMb = Create("--max-memory-mb", 0.0, "Servers: the most MiB of dense tables (values, optimizer state, replicas) each will hold; a table over it is refused (0: no cap)");

    /// <summary>Server memory options given to a launcher, passed on to its servers.</summary>
    public static string[] ServerMemoryArguments(ParseResult p)
    {
        var args = new List<string>();
        foreach (var option in new[] { KeyCacheMb, PullFilterMb, MaxMemoryMb })
        {
            if (p.GetResult(option) is { Implicit: false })
            {
                Bytes(p, option); // refused here, before any process starts
                args.AddRange([option.Name, p.GetValue(option).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            }
        }
        return [.. args];
    }

    /// <summary>MiB as bytes, refusing what is not a size.</summary>
    public static long Bytes(ParseResult p, Option<double> option)
    {
        double mib = p.GetValue(option);
        if (!(mib >= 0) || mib > 1 << 20)
        {
            throw new ArgumentException($"{option.Name} must be a size in MiB between 0 and 1048576, got {mib}");
        }
        return (long)(mib * (1 << 20));
    }

    /// <summary>The transport options from --max-frame-mb.</summary>
    public static Transport.TransportOptions Transport(ParseResult p)
    {
        // Commands without an option (a worker listens to nobody) keep the transport's default for it.
        T Value<T>(Option<T> option, T fallback) => p.CommandResult.Command.Options.Contains(option) ? p.GetValue(option)! : fallback;
        var defaults = new Transport.TransportOptions();
        double frameTimeout = Value(FrameTimeoutS, defaults.FrameTimeout.TotalSeconds);
        int perAddress = Value(MaxConnectionsPerAddress, defaults.MaxConnectionsPerAddress);
        if (!(frameTimeout > 0) || frameTimeout > 86_400 || perAddress < 1)
        {
            throw new ArgumentException($"--frame-timeout must be in (0, 86400] s and --max-connections-per-address at least 1 (got {frameTimeout} and {perAddress})");
        }
        defaults.MaxFrameBytes = checked(Value(MaxFrameMb, defaults.MaxFrameBytes >> 20) * (1 << 20));
        defaults.AllowInsecure = p.GetValue(Insecure);
        defaults.FrameTimeout = TimeSpan.FromSeconds(frameTimeout);
        defaults.MaxConnectionsPerAddress = perAddress;
        return defaults;
    }

    /// <summary>
    /// Makes --secret-file (or PS_SECRET_FILE) this process's job secret and its children's: the variable, with a full
    /// path, is what <see cref="Transport.TransportOptions.Secret"/> reads; --insecure likewise goes to PS_INSECURE.
    /// Throws <see cref="ArgumentException"/> when the file cannot serve as a secret.
    /// </summary>
    public static void ExportSecurity(ParseResult p)
    {
        if (p.GetValue(SecretFile) is { Length: > 0 } path)
        {
            string full = Path.GetFullPath(path);
            _ = ParameterServer.Transport.JobSecret.Read(full); // say now, not at the first connection, what is wrong with it
            Environment.SetEnvironmentVariable(ParameterServer.Transport.JobSecret.Variable, full);
        }
        if (p.GetValue(TokenFile) is { Length: > 0 } token)
        {
            string full = Path.GetFullPath(token);
            _ = ParameterServer.Transport.JobSecret.Read(full);
            Environment.SetEnvironmentVariable(ParameterServer.Transport.JobSecret.TokenVariable, full);
        }
        if (p.GetValue(Insecure))
        {
            Environment.SetEnvironmentVariable(Settings.EnvironmentName(Insecure.Name), "true");
        }
        ExportTls(p);
    }

    /// <summary>Commands that start a whole job of their own: with --tls and no certificate, they make one for it.</summary>
    private static readonly string[] s_jobStarters = ["local", "train", "bench"];

    private static void ExportTls(ParseResult p)
    {
        foreach (var (option, variable) in new[] { (TlsCert, ParameterServer.Transport.TlsOptions.CertificateVariable), (TlsKey, ParameterServer.Transport.TlsOptions.KeyVariable), (TlsCa, ParameterServer.Transport.TlsOptions.CaVariable) })
        {
            if (p.GetValue(option) is { Length: > 0 } path)
            {
                Environment.SetEnvironmentVariable(variable, Path.GetFullPath(path));
            }
        }
        if (p.GetValue(TlsClientCerts))
        {
            Environment.SetEnvironmentVariable(ParameterServer.Transport.TlsOptions.ClientCertificatesVariable, "true");
        }
        bool hasCertificate = Environment.GetEnvironmentVariable(ParameterServer.Transport.TlsOptions.CertificateVariable) is { Length: > 0 };
        if (hasCertificate)
        {
            _ = ParameterServer.Transport.TlsOptions.FromEnvironment(); // say now, not at the first connection, what is wrong with the files
            return;
        }
        if (!p.GetValue(Tls))
        {
            return;
        }
        var top = p.CommandResult;
        while (top.Parent is System.CommandLine.Parsing.CommandResult parent && parent.Parent is not null)
        {
            top = parent;
        }
        if (!s_jobStarters.Contains(top.Command.Name))
        {
            throw new ArgumentException($"--tls needs this node's certificate: give --tls-cert and --tls-key (the same job certificate on every node: `pserver tls-cert --out DIR` makes one)");
        }
        ParameterServer.Transport.TlsOptions.EnsureForLocalJob();
    }
}
