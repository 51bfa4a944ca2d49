namespace ParameterServer.Transport.Streams;

/// <summary>
/// The bytes under one <see cref="Connection"/>: a TCP socket (<see cref="SocketStream"/>), an in-process pipe
/// (<see cref="InMemoryConnections"/>), later TLS as a decorator. Calls block; a peer that closed or reset makes them
/// throw <see cref="IOException"/> or <see cref="System.Net.Sockets.SocketException"/>.
/// </summary>
internal interface IConnectionStream : IDisposable
{
    /// <summary>The peer's address for messages ("127.0.0.1:5001"), if known.</summary>
    string? RemoteAddress { get; }

    /// <summary>Whether <see cref="TryWriteNow"/> and <see cref="WriteUntil"/> can send part of their data.</summary>
    bool SupportsPartialWrites { get; }

    /// <summary>
    /// Whether bytes wait to be read, cheaply (no blocking); true when the stream cannot tell (a caller about to spin
    /// for bytes then reads at once, blocking as before).
    /// </summary>
    bool BytesWaiting { get; }

    /// <summary>Reads what is there (at least one byte, waiting for it); 0 when the peer closed.</summary>
    int Read(Span<byte> buffer);

    /// <summary>
    /// Longest wait for the peer to take any byte in <see cref="Write"/> and <see cref="WriteAll"/>; then they throw
    /// <see cref="TimeoutException"/>. A hung or cut-off peer thus fails its connection instead of holding the writer.
    /// </summary>
    TimeSpan WriteStallTimeout { get; set; }

    /// <summary>Writes all of <paramref name="data"/>, waiting for room.</summary>
    void Write(ReadOnlySpan<byte> data);

    /// <summary>Writes all of <paramref name="data"/>; <paramref name="more"/>: more of the same frame follows at once (one packet, not two).</summary>
    void WriteAll(ReadOnlySpan<byte> data, bool more);

    /// <summary>Writes what fits without waiting; 0 when nothing does or partial writes are not supported.</summary>
    int TryWriteNow(ReadOnlySpan<byte> data);

    /// <summary>Writes, waiting for room at most until <paramref name="deadline"/> (a Stopwatch timestamp); returns the bytes written.</summary>
    int WriteUntil(ReadOnlySpan<byte> data, long deadline);

    /// <summary>Stops both directions: the peer's reads end, blocked calls here return or throw.</summary>
    void Shutdown();
}

/// <summary>Opens and accepts connection streams: TCP (<see cref="TcpConnections"/>) or in-process (<see cref="InMemoryConnections"/>).</summary>
internal interface IConnectionFactory
{
    /// <summary>
    /// Opens a stream to HOST:PORT, or throws <see cref="TransportException"/> naming <paramref name="peer"/> and the
    /// cause; <paramref name="cancellation"/> ends a connect in progress (the peer was declared dead meanwhile).
    /// </summary>
    IConnectionStream Connect(string host, int port, TimeSpan timeout, string peer, CancellationToken cancellation = default);

    /// <summary>Starts accepting on HOST:PORT (0: any free port), or throws <see cref="TransportException"/> saying why it cannot.</summary>
    IAcceptor Listen(string host, int port);
}

/// <summary>A listening endpoint.</summary>
internal interface IAcceptor : IDisposable
{
    /// <summary>The bound port (the chosen one when 0 was asked for).</summary>
    int Port { get; }

    /// <summary>Waits for the next connection; throws ObjectDisposedException once disposed.</summary>
    IConnectionStream Accept();
}
