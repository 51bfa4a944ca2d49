using System.Net;
using System.Net.Sockets;

namespace ParameterServer.Transport.Streams;

/// <summary>A TCP socket as a connection stream; partial and timed writes through <see cref="NativeSend"/> where the platform has it.</summary>
internal sealed class SocketStream(Socket socket) : IConnectionStream
{
    public string? RemoteAddress => socket.RemoteEndPoint?.ToString();

    public bool SupportsPartialWrites => NativeSend.IsSupported;

    public bool BytesWaiting => socket.Available > 0;

    public int Read(Span<byte> buffer) => socket.Receive(buffer, SocketFlags.None);

    /// <summary>SO_SNDTIMEO: the kernel ends a blocking send that made no progress for this long (EAGAIN).</summary>
    public TimeSpan WriteStallTimeout
    {
        get => socket.SendTimeout <= 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(socket.SendTimeout);
        set => socket.SendTimeout = value == Timeout.InfiniteTimeSpan ? 0 : (int)Math.Clamp(value.TotalMilliseconds, 1, int.MaxValue);
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        if (NativeSend.IsSupported)
        {
            NativeSend.SendAll(socket, data, more: false);
            return;
        }
        while (!data.IsEmpty)
        {
            int sent;
            try
            {
                sent = socket.Send(data, SocketFlags.None);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
            {
                throw new TimeoutException($"the peer took no bytes for {WriteStallTimeout.TotalSeconds:0.#} s", ex);
            }
            data = data[sent..];
        }
    }

    public void WriteAll(ReadOnlySpan<byte> data, bool more)
    {
        if (NativeSend.IsSupported)
        {
            NativeSend.SendAll(socket, data, more);
            return;
        }
        Write(data);
    }

    public int TryWriteNow(ReadOnlySpan<byte> data) => NativeSend.IsSupported ? NativeSend.TrySendNow(socket, data) : 0;

    public int WriteUntil(ReadOnlySpan<byte> data, long deadline) => NativeSend.IsSupported ? NativeSend.SendUntil(socket, data, deadline) : 0;

    public void Shutdown()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // already gone
        }
    }

    public void Dispose() => socket.Close();
}

/// <summary>TCP over IPv4: what nodes use.</summary>
internal sealed class TcpConnections : IConnectionFactory
{
    public static TcpConnections Instance { get; } = new();

    public IConnectionStream Connect(string host, int port, TimeSpan timeout, string peer, CancellationToken cancellation = default)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            var address = IPAddress.TryParse(host, out var ip) ? ip : Dns.GetHostAddresses(host).First(a => a.AddressFamily == AddressFamily.InterNetwork);
            // A blocking connect on a helper thread, not ConnectAsync: on Linux a socket that was used
            // asynchronously stays non-blocking, and every later synchronous Send/Receive then allocates.
            var connect = Task.Run(() => socket.Connect(new IPEndPoint(address, port)));
            int signalled = WaitHandle.WaitAny([((IAsyncResult)connect).AsyncWaitHandle, cancellation.WaitHandle], timeout);
            if (signalled != 0)
            {
                socket.Dispose();
                throw new OperationCanceledException(signalled == 1 ? "given up: the peer was declared dead" : null, cancellation);
            }
            connect.GetAwaiter().GetResult(); // rethrows the SocketException itself
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            socket.Dispose();
            string cause = ex switch
            {
                SocketException se => se.SocketErrorCode == SocketError.ConnectionRefused ? "connection refused (nothing listens there)" : se.Message,
                OperationCanceledException when cancellation.IsCancellationRequested => "given up: the peer was declared dead",
                OperationCanceledException => $"no answer within {timeout.TotalSeconds:0.#} s",
                _ => ex.Message,
            };
            throw new TransportException($"cannot connect to {peer} at {host}:{port}: {cause}", ex);
        }
        socket.NoDelay = true;
        return new SocketStream(socket);
    }

    public IAcceptor Listen(string host, int port) => new TcpAcceptor(host, port);

    private sealed class TcpAcceptor : IAcceptor
    {
        private readonly Socket _socket;

        public TcpAcceptor(string host, int port)
        {
            _socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var address = host is "*" or "0.0.0.0" ? IPAddress.Any : IPAddress.TryParse(host, out var ip) ? ip : Dns.GetHostAddresses(host).First(a => a.AddressFamily == AddressFamily.InterNetwork);
            try
            {
                _socket.Bind(new IPEndPoint(address, port));
                _socket.Listen(512);
            }
            catch (SocketException ex)
            {
                _socket.Dispose();
                string hint = ex.SocketErrorCode == SocketError.AddressAlreadyInUse ? " (the port is in use: pick another with --port, or 0 for any free port)" : "";
                throw new TransportException($"cannot listen on {host}:{port}: {ex.Message}{hint}", ex);
            }
            Port = ((IPEndPoint)_socket.LocalEndPoint!).Port;
        }

        public int Port { get; }

        public IConnectionStream Accept()
        {
            var client = _socket.Accept();
            client.NoDelay = true;
            return new SocketStream(client);
        }

        public void Dispose() => _socket.Dispose();
    }
}
