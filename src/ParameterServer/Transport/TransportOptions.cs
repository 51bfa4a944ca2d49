using System.Net;
using ParameterServer.Protocol;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Transport;

/// <summary>Limits and timeouts of one node's connections.</summary>
public sealed class TransportOptions
{
    /// <summary>Largest frame (header + payload) accepted or sent. Defaults to 512 MiB.</summary>
    public int MaxFrameBytes { get; set; } = 512 << 20;

    /// <summary>Bytes queued on a connection above which senders wait (backpressure). Defaults to 16 MiB.</summary>
    public int SendQueueHighWaterBytes { get; set; } = 16 << 20;

    /// <summary>
    /// How long a sender waits for room in a full send queue, and a write for the peer to take any byte, before the
    /// connection fails (closed: a hung or cut-off peer never holds a sender longer). Defaults to 10 s.
    /// </summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long to try to open a TCP connection. Defaults to 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Receive buffer per connection. A larger frame that the handler does not take in pieces or into its own memory
    /// is received in a buffer of its size, given back once handled. Defaults to 256 KiB.
    /// </summary>
    public int ReceiveBufferBytes { get; set; } = 256 << 10;

    /// <summary>
    /// The job's shared secret (16 bytes or more): every connection starts with a mutual HMAC-SHA256
    /// challenge-response proving both ends hold it. Defaults to the file the PS_SECRET_FILE environment variable
    /// names (<see cref="JobSecret"/>); null: connections are not authenticated, which a node allows only on a
    /// loopback address unless <see cref="AllowInsecure"/>.
    /// </summary>
    public byte[]? Secret
    {
        get
        {
            if (!_secretResolved)
            {
                _secret = JobSecret.FromEnvironment();
                _secretResolved = true;
            }
            return _secret;
        }
        set
        {
            _secret = value is null || value.Length >= MinSecretBytes ? value : throw new ArgumentException($"a job secret needs at least {MinSecretBytes} bytes, got {value.Length}", nameof(value));
            _secretResolved = true;
        }
    }

    private byte[]? _secret;
    private bool _secretResolved;

    /// <summary>
    /// The job's read-only token (<see cref="JobSecret.ReadTokenOf"/>), used by tools that have no <see cref="Secret"/>:
    /// they may ask for status and statistics, nothing more. Defaults to the file PS_TOKEN_FILE names.
    /// </summary>
    public byte[]? ReadToken
    {
        get
        {
            if (!_tokenResolved)
            {
                _token = JobSecret.TokenFromEnvironment();
                _tokenResolved = true;
            }
            return _token;
        }
        set
        {
            _token = value;
            _tokenResolved = true;
        }
    }

    private byte[]? _token;
    private bool _tokenResolved;

    /// <summary>The shortest secret accepted.</summary>
    public const int MinSecretBytes = 16;

    /// <summary>
    /// TLS on every connection (encryption, and peers' certificates checked against the job's CA), under the
    /// secret's handshake. Defaults to the files the PS_TLS_* variables name (<see cref="TlsOptions.FromEnvironment"/>);
    /// null: connections are not encrypted.
    /// </summary>
    public TlsOptions? Tls
    {
        get
        {
            if (!_tlsResolved)
            {
                _tls = TlsOptions.FromEnvironment();
                _tlsResolved = true;
            }
            return _tls;
        }
        set
        {
            _tls = value;
            _tlsResolved = true;
        }
    }

    private TlsOptions? _tls;
    private bool _tlsResolved;

    /// <summary>Listen on a non-loopback address without a <see cref="Secret"/> (`--insecure`): anyone who reaches the port is a member.</summary>
    public bool AllowInsecure { get; set; }

    /// <summary>
    /// How long a peer has to finish a frame once its first bytes arrived, plus 1 s per MiB of the frame; then the
    /// connection is closed (a slow-loris sender holds a thread and a buffer). Defaults to 10 s.
    /// </summary>
    public TimeSpan FrameTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Connections one remote address may hold open to a listener at once; more are closed at once. Defaults to 256.</summary>
    public int MaxConnectionsPerAddress { get; set; } = 256;

    /// <summary>How long a new connection has to complete authentication before it is closed. Defaults to 5 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The role this node states when it connects (the MACs cover it): servers and tools set theirs.</summary>
    internal NodeRole Role { get; private set; } = NodeRole.Worker;

    /// <summary>Connections being authenticated at once on one listener; more are closed at once (each holds a thread until done).</summary>
    internal const int MaxPendingHandshakes = 64;

    /// <summary>How connections are opened and accepted: TCP (the default), or in-process for test clusters.</summary>
    internal IConnectionFactory Connections { get; set; } = TcpConnections.Instance;

    internal void Validate()
    {
        if (MaxFrameBytes < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFrameBytes), MaxFrameBytes, "MaxFrameBytes must be at least 1024");
        }
        if (ReceiveBufferBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(ReceiveBufferBytes), ReceiveBufferBytes, "ReceiveBufferBytes must be at least 4096");
        }
        if (MaxConnectionsPerAddress < 1 || FrameTimeout <= TimeSpan.Zero || HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConnectionsPerAddress), "MaxConnectionsPerAddress must be at least 1, FrameTimeout and HandshakeTimeout above 0");
        }
        if (SendQueueHighWaterBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(SendQueueHighWaterBytes), SendQueueHighWaterBytes, "SendQueueHighWaterBytes must be at least 4096");
        }
    }

    /// <summary>A copy for connections opened by a node of <paramref name="role"/>.</summary>
    internal TransportOptions As(NodeRole role)
    {
        if (Role == role)
        {
            return this;
        }
        var copy = (TransportOptions)MemberwiseClone();
        copy.Role = role;
        return copy;
    }

    /// <summary>
    /// Refuses an unauthenticated listener on an address other hosts can reach, unless the user said so: a job is
    /// closed by default once it leaves loopback.
    /// </summary>
    internal void CheckListen(string host, int port)
    {
        if (Secret is null && !AllowInsecure && !IsLoopback(host))
        {
            throw new ArgumentException($"refusing to listen on {host}:{port} without authentication: anyone who reaches that port could read and change the model or shut the job down. Give every node the same --secret-file (or PS_SECRET_FILE; `pserver secret --out FILE` makes one), or say --insecure");
        }
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));

    /// <summary>A copy that gives up connecting after <paramref name="timeout"/> (reconnecting among standby schedulers).</summary>
    internal TransportOptions WithConnectTimeout(TimeSpan timeout)
    {
        var copy = (TransportOptions)MemberwiseClone();
        copy.ConnectTimeout = timeout;
        return copy;
    }
}
