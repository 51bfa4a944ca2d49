using Microsoft.Extensions.Logging;
using ParameterServer.Protocol;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Transport;

/// <summary>
/// Accepts connections on one address (TCP, or in-process: <see cref="TransportOptions"/>) and starts a
/// <see cref="Connection"/> for each; with TLS, once the TLS handshake is done; with a job secret, only after the peer
/// has proved it (<see cref="Handshake"/>); both on a thread of its own with a deadline, so a slow or silent peer holds neither the accept loop nor the thread pool.
/// </summary>
internal sealed class Listener : IDisposable
{
    private readonly IAcceptor _acceptor;
    private readonly Func<IConnectionStream, Connection> _accept;
    private readonly ILogger? _logger;
    private readonly TransportOptions _options;
    private int _pendingHandshakes;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _perAddress = new();
    private long _refused;
    private volatile bool _disposed;

    /// <summary>Listens on HOST:PORT (0: any free port) with <paramref name="options"/>' connections, secret and limits.</summary>
    public Listener(string host, int port, Func<IConnectionStream, Connection> accept, ILogger? logger, TransportOptions options)
    {
        options.CheckListen(host, port);
        _accept = accept;
        _logger = logger;
        _options = options;
        _acceptor = options.Connections.Listen(host, port);
        var thread = new Thread(AcceptLoop) { IsBackground = true, Name = "ps-accept" };
        thread.Start();
    }

    /// <summary>The bound port (the chosen one when 0 was asked for).</summary>
    public int Port => _acceptor.Port;

    /// <summary>Connections closed because the peer failed authentication (or too many were pending).</summary>
    public long Refused => Interlocked.Read(ref _refused);

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
            string address = AddressOf(client.RemoteAddress);
            if (_perAddress.AddOrUpdate(address, 1, (_, n) => n + 1) > _options.MaxConnectionsPerAddress)
            {
                Release(address);
                Refuse(client, $"{address} already holds {_options.MaxConnectionsPerAddress} connections (the limit per address)");
                continue;
            }
            if (_options.Secret is null && _options.Tls is null)
            {
                Start(client, role: null, address);
            }
            else if (Interlocked.Increment(ref _pendingHandshakes) > TransportOptions.MaxPendingHandshakes)
            {
                Interlocked.Decrement(ref _pendingHandshakes);
                Release(address);
                Refuse(client, $"{client.RemoteAddress} connected while {TransportOptions.MaxPendingHandshakes} others were still authenticating");
            }
            else
            {
                new Thread(() => Authenticate(client, address)) { IsBackground = true, Name = "ps-handshake" }.Start();
            }
        }
    }

    private void Authenticate(IConnectionStream client, string address)
    {
        try
        {
            if (_options.Tls is { } tls)
            {
                client = TlsStream.Accept(client, tls, _options.HandshakeTimeout);
            }
            NodeRole? role = _options.Secret is { } secret ? Handshake.Accept(client, secret, _options.HandshakeTimeout) : null;
            Start(client, role, address);
        }
        catch (TransportException ex)
        {
            Release(address);
            Refuse(client, ex.Message);
        }
        finally
        {
            Interlocked.Decrement(ref _pendingHandshakes);
        }
    }

    private void Refuse(IConnectionStream client, string why)
    {
        Interlocked.Increment(ref _refused);
        _logger?.LogPeerRefused(why);
        client.Dispose();
    }

    private void Start(IConnectionStream client, NodeRole? role, string address)
    {
        Connection? connection = null;
        try
        {
            connection = _accept(client);
            connection.AuthenticatedRole = role;
            connection.Released = () => Release(address);
            connection.Start();
        }
        catch (Exception ex)
        {
            if (connection?.Released is null)
            {
                Release(address);
            }
            _logger?.LogConnectionStartFailed(ex, client.RemoteAddress);
            client.Dispose();
        }
    }

    /// <summary>Connections open from <paramref name="address"/> now.</summary>
    public int ConnectionsFrom(string address) => _perAddress.TryGetValue(address, out int n) ? n : 0;

    /// <summary>One connection from <paramref name="address"/> fewer; an address with none left is forgotten (no entry per address ever seen).</summary>
    private void Release(string address)
    {
        _perAddress.AddOrUpdate(address, 0, (_, n) => Math.Max(0, n - 1));
        _perAddress.TryRemove(new KeyValuePair<string, int>(address, 0));
    }

    /// <summary>The host part of "host:port" ("[::1]:5000" too): connections are counted per remote host.</summary>
    private static string AddressOf(string? remote)
    {
        if (remote is null)
        {
            return "unknown";
        }
        int colon = remote.LastIndexOf(':');
        return colon > 0 && !remote.EndsWith(']') ? remote[..colon] : remote;
    }

    public void Dispose()
    {
        _disposed = true;
        _acceptor.Dispose();
    }
}
