using ParameterServer.Extensions;
using ParameterServer.Transport;

namespace ParameterServer.Server;

/// <summary>Settings of a server node.</summary>
public sealed class ServerOptions
{
    /// <summary>The scheduler as HOST:PORT. Defaults to 127.0.0.1:9700.</summary>
    public string Scheduler { get; set; } = "127.0.0.1:9700";

    /// <summary>The job this node belongs to: a scheduler running another job refuses it. Empty (the default): any job.</summary>
    public string JobId { get; set; } = "";

    /// <summary>Address to listen on for workers. Defaults to 127.0.0.1.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Host name workers should use to reach this server. Defaults to <see cref="Host"/>.</summary>
    public string? AdvertisedHost { get; set; }

    /// <summary>Port to listen on; 0 (the default) picks a free one.</summary>
    public int Port { get; set; }

    /// <summary>
    /// How long to wait for the scheduler: to accept a connection (a server may start first; it retries) and then to
    /// answer the registration. Defaults to 30 s (`pserver server --startup-timeout`, 300 s).
    /// </summary>
    public TimeSpan RegisterTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public TransportOptions Transport { get; set; } = new();

    /// <summary>Join a job that is already running (pserver server --join): the key ranges it takes over are copied to it first.</summary>
    public bool Join { get; set; }

    /// <summary>Key caching: bytes of key lists kept per worker connection (least recently used dropped first). Defaults to 64 MiB.</summary>
    public long KeyCacheBytes { get; set; } = 64L << 20;

    /// <summary>Pull filters: bytes of rows remembered per worker connection and table (what it was last sent). Defaults to 256 MiB.</summary>
    public long PullFilterBytes { get; set; } = 256L << 20;

    /// <summary>
    /// The most bytes of dense tables (values and optimizer state, replicas included) this server will hold; the
    /// scheduler refuses a table whose share would exceed it. 0 (the default) sets no cap.
    /// </summary>
    public long MaxMemoryBytes { get; set; }

    /// <summary>The update handlers and pull filters this server can create, built-in and registered (<see cref="ExtensionRegistry"/>).</summary>
    public ExtensionRegistry Extensions { get; } = new();

    /// <summary>
    /// Registers a user-defined pull filter under <paramref name="name"/>; tables select it with <c>PullFilter = "name"</c>
    /// or <c>"name:parameters"</c>. The factory receives that full string. Same as <c>Extensions.AddPullFilter</c>.
    /// </summary>
    public ServerOptions AddPullFilter(string name, Func<string, IPullFilter> factory)
    {
        Extensions.AddPullFilter(name, factory);
        return this;
    }

    /// <summary>
    /// Registers a user-defined update handler under <paramref name="name"/>; tables select it with
    /// <c>Handler = "name"</c> or <c>"name:param=value,..."</c>. The factory receives that full string. Same as
    /// <c>Extensions.AddHandler</c>.
    /// </summary>
    public ServerOptions AddHandler(string name, Func<string, IUpdateHandler> factory)
    {
        Extensions.AddHandler(name, factory);
        return this;
    }

    internal IReadOnlyCollection<string> HandlerNames => Extensions.AdvertisedNames;

    internal IUpdateHandler CreateHandler(string spec) => Extensions.CreateHandler(spec);

    internal IPullFilter? CreatePullFilter(string spec) => Extensions.CreatePullFilter(spec);

    internal void Validate()
    {
        if (Port is < 0 or > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(Port), Port, "port must be in [0, 65535]");
        }
        if (MaxMemoryBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxMemoryBytes), MaxMemoryBytes, "must not be negative (0 sets no cap)");
        }
        if (PullFilterBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(PullFilterBytes), PullFilterBytes, "must not be negative");
        }
        Transport.Validate();
    }
}
