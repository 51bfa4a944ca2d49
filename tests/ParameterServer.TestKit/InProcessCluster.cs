using System.Net.Sockets;
using System.Net;
using ParameterServer.Client;
using ParameterServer.Protocol;
using ParameterServer.Scheduler;
using ParameterServer.Server;
using ParameterServer.Transport;
using ParameterServer.Transport.Streams;

namespace ParameterServer.TestKit;

/// <summary>A scheduler and servers in this process, talking real TCP on 127.0.0.1 (for protocol abuse tests).</summary>
internal sealed class InProcessCluster : IAsyncDisposable
{
    private readonly List<ServerNode> _servers = new();

    public SchedulerNode Scheduler { get; private set; } = null!;

    public IReadOnlyList<ServerNode> Servers => _servers;

    public string Address => $"127.0.0.1:{Scheduler.Port}";

    public static async Task<(InProcessCluster Cluster, PsClient[] Clients)> StartAsync(int servers, int workers, Action<ServerOptions>? configure = null, int replication = 0)
    {
        var cluster = new InProcessCluster();
        // These nodes share the test process with tests that run clusters of processes in parallel: on a loaded machine a
        // heartbeat thread can starve for longer than the default 0.8 s, and a node declared dead would fail a test
        // that is not about failure detection (those kill processes or close connections, which is seen at once).
        cluster.Scheduler = SchedulerNode.Start(new SchedulerOptions { Port = 0, Servers = servers, Workers = workers, Replication = replication, HeartbeatTimeout = TimeSpan.FromSeconds(5) });
        for (int i = 0; i < servers; i++)
        {
            var options = new ServerOptions { Scheduler = cluster.Address };
            configure?.Invoke(options);
            cluster._servers.Add(await ServerNode.StartAsync(options));
        }
        var clients = await Task.WhenAll(Enumerable.Range(0, workers).Select(_ =>
            PsClient.ConnectAsync(new WorkerOptions { Scheduler = cluster.Address, RequestTimeout = TimeSpan.FromSeconds(10) })));
        return (cluster, clients.OrderBy(c => c.Rank).ToArray());
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var s in _servers)
        {
            await s.DisposeAsync();
        }
        await Scheduler.DisposeAsync();
    }
}

/// <summary>
/// A hand-driven TCP peer that writes raw bytes and reads raw frames, to attack a node's parser. When this process has
/// a job secret (PS_SECRET_FILE) it first proves it in the role given, as a member gone wrong would.
/// </summary>
internal sealed class RawPeer : IDisposable
{
    private readonly TcpClient _client = new();

    public RawPeer(int port, NodeRole role = NodeRole.Worker)
    {
        _client.NoDelay = true; // each Write leaves as written: tests control how a frame is split
        _client.Connect(IPAddress.Loopback, port);
        if (JobSecret.FromEnvironment() is { } secret)
        {
            byte[] key = role == NodeRole.Reader ? JobSecret.ReadTokenOf(secret) : secret; // a reader holds only the read-only token
            Handshake.Connect(new SocketStream(_client.Client), key, role, TimeSpan.FromSeconds(10), $"the node on port {port}");
        }
    }

    public void Write(ReadOnlySpan<byte> bytes) => _client.GetStream().Write(bytes);

    public void WriteFrame(FrameHeader header, ReadOnlySpan<byte> payload)
    {
        header.PayloadLength = payload.Length;
        var bytes = new byte[FrameHeader.Size + payload.Length];
        header.Write(bytes);
        payload.CopyTo(bytes.AsSpan(FrameHeader.Size));
        Write(bytes);
    }

    /// <summary>Reads one frame, or returns null when the node closed the connection.</summary>
    public (FrameHeader Header, byte[] Payload)? ReadFrame(TimeSpan timeout)
    {
        _client.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        var head = new byte[FrameHeader.Size];
        if (!ReadExactly(head))
        {
            return null;
        }
        Assert.Equal(HeaderStatus.Ok, FrameHeader.TryRead(head, int.MaxValue, out var header, out _));
        var payload = new byte[header.PayloadLength];
        Assert.True(ReadExactly(payload));
        return (header, payload);
    }

    private bool ReadExactly(byte[] buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n;
            try
            {
                n = _client.GetStream().Read(buffer, read, buffer.Length - read);
            }
            catch (IOException)
            {
                return false;
            }
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }

    public void Dispose() => _client.Dispose();
}
