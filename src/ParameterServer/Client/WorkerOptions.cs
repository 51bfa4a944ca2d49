using ParameterServer.Extensions;
using ParameterServer.Transport;

namespace ParameterServer.Client;

/// <summary>Settings of a worker's connection to the job.</summary>
public sealed class WorkerOptions
{
    /// <summary>The scheduler as HOST:PORT. Defaults to 127.0.0.1:9700.</summary>
    public string Scheduler { get; set; } = "127.0.0.1:9700";

    /// <summary>The job this node belongs to: a scheduler running another job refuses it. Empty (the default): any job.</summary>
    public string JobId { get; set; } = "";

    /// <summary>How long a push or pull may wait for its servers before it fails. Defaults to 30 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long to wait for the job to start (all servers and workers registered). Defaults to 5 minutes.</summary>
    public TimeSpan StartupTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a barrier may wait for the other workers. Defaults to 10 minutes.</summary>
    public TimeSpan BarrierTimeout { get; set; } = TimeSpan.FromMinutes(10);

    public TransportOptions Transport { get; set; } = new();

    /// <summary>
    /// A call, barrier or wait unanswered this long is logged once with what it waits for, and listed by
    /// `pserver status` and the dashboard while it lasts. Defaults to 2 s.
    /// </summary>
    public TimeSpan SlowCallAfter { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Join a job that is already running (pserver worker --join) instead of being one of the workers it starts with.</summary>
    public bool Join { get; set; }

    /// <summary>Pull filters: bytes of rows kept per server and table to fill the rows an answer leaves out. Defaults to 256 MiB.</summary>
    public long PullFilterBytes { get; set; } = 256L << 20;

    /// <summary>The push filters this worker can create by name, built-in and registered (<see cref="ExtensionRegistry"/>).</summary>
    public ExtensionRegistry Extensions { get; } = new();

    internal void Validate()
    {
        if (PullFilterBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(PullFilterBytes), PullFilterBytes, "must not be negative");
        }
        if (SlowCallAfter <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(SlowCallAfter), SlowCallAfter, "SlowCallAfter must be positive");
        }
        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "RequestTimeout must be positive");
        }
        Transport.Validate();
    }
}
