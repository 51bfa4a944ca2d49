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

    /// <summary>Initial receive buffer per connection; it grows to the largest frame seen. Defaults to 256 KiB.</summary>
    public int ReceiveBufferBytes { get; set; } = 256 << 10;

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
        if (SendQueueHighWaterBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(SendQueueHighWaterBytes), SendQueueHighWaterBytes, "SendQueueHighWaterBytes must be at least 4096");
        }
    }

    /// <summary>A copy that gives up connecting after <paramref name="timeout"/> (reconnecting among standby schedulers).</summary>
    internal TransportOptions WithConnectTimeout(TimeSpan timeout)
    {
        var copy = (TransportOptions)MemberwiseClone();
        copy.ConnectTimeout = timeout;
        return copy;
    }
}
