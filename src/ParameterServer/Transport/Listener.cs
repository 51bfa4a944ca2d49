using Microsoft.Extensions.Logging;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Transport;

/// <summary>Accepts connections on one address (TCP, or in-process: <see cref="TransportOptions"/>) and starts a <see cref="Connection"/> for each.</summary>
internal sealed class Listener : IDisposable
{
    private readonly IAcceptor _acceptor;
    private readonly Func<IConnectionStream, Connection> _accept;
    private readonly ILogger? _logger;
    private volatile bool _disposed;

    /// <summary>Listens on HOST:PORT (0: any free port) through <paramref name="connections"/> (TCP when null).</summary>
    public Listener(string host, int port, Func<IConnectionStream, Connection> accept, ILogger? logger, IConnectionFactory? connections = null)
    {
        _accept = accept;
        _logger = logger;
        _acceptor = (connections ?? TcpConnections.Instance).Listen(host, port);
        var thread = new Thread(AcceptLoop) { IsBackground = true, Name = "ps-accept" };
        thread.Start();
    }

    /// <summary>The bound port (the chosen one when 0 was asked for).</summary>
    public int Port => _acceptor.Port;

    private void AcceptLoop()
    {
        while (!_disposed)
        {
            IConnectionStream client;
            try
            {
                client = _acceptor.Accept();
            }
            catch (Exception ex) when (ex is System.Net.Sockets.SocketException or ObjectDisposedException)
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
                _logger?.LogConnectionStartFailed(ex, client.RemoteAddress);
                client.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _acceptor.Dispose();
    }
}
