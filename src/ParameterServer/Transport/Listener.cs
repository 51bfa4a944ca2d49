using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace ParameterServer.Transport;

/// <summary>Accepts TCP connections on one address and starts a <see cref="Connection"/> for each.</summary>
internal sealed class Listener : IDisposable
{
    private readonly Socket _socket;
    private readonly Func<Socket, Connection> _accept;
    private readonly ILogger? _logger;
    private volatile bool _disposed;

    public Listener(string host, int port, Func<Socket, Connection> accept, ILogger? logger)
    {
        _accept = accept;
        _logger = logger;
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
        var thread = new Thread(AcceptLoop) { IsBackground = true, Name = "ps-accept" };
        thread.Start();
    }

    /// <summary>The bound port (the chosen one when 0 was asked for).</summary>
    public int Port { get; }

    private void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket client;
            try
            {
                client = _socket.Accept();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                if (!_disposed)
                {
                    _logger?.LogAcceptFailed(ex.Message);
                }
                continue;
            }
            try
            {
                _accept(client).Start();
            }
            catch (Exception ex)
            {
                _logger?.LogConnectionStartFailed(ex, client.RemoteEndPoint);
                client.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _socket.Dispose();
    }
}
