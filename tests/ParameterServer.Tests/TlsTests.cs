using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

/// <summary>TLS under the secret's handshake (<see cref="TlsOptions"/>) on real loopback sockets: what gets through, that the wire is encrypted, and each refusal.</summary>
public sealed class TlsTests : IDisposable
{
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef");
    private static readonly byte[] Marker = Encoding.ASCII.GetBytes("PLAINTEXT-MARKER-0123456789");
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("ps-tls-test-");
    private readonly FrameRecorder _serverSide = new();
    private readonly TlsOptions _jobTls;
    private readonly TlsOptions _otherTls;

    public TlsTests()
    {
        _jobTls = Certificate("job", requireClientCertificate: false);
        _otherTls = Certificate("other", requireClientCertificate: false);
    }

    public void Dispose() => _dir.Delete(recursive: true);

    private TlsOptions Certificate(string name, bool requireClientCertificate)
    {
        string crt = Path.Combine(_dir.FullName, name + ".crt");
        string key = Path.Combine(_dir.FullName, name + ".key");
        if (!File.Exists(crt))
        {
            TlsOptions.Generate(crt, key);
        }
        return TlsOptions.Load(crt, key, caFile: null, requireClientCertificate);
    }

    private Listener Listen(TlsOptions? tls) =>
        new("127.0.0.1", 0, s => new Connection(s, _serverSide, Options(tls), null, "test peer"), null, Options(tls));

    private static TransportOptions Options(TlsOptions? tls) => new() { Secret = Secret, Tls = tls, HandshakeTimeout = TimeSpan.FromMilliseconds(800) };

    private static Connection Connect(int port, TlsOptions? tls, FrameRecorder? handler = null) =>
        Connection.Connect("127.0.0.1", port, handler ?? new FrameRecorder(), Options(tls), null, "the test server");

    private static async Task WaitForRefusalsAsync(Listener listener, long count)
    {
        var watch = Stopwatch.StartNew();
        while (listener.Refused < count)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{listener.Refused} refusals, expected {count}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Small_and_large_frames_cross_encrypted_and_the_wire_never_shows_them()
    {
        using var listener = Listen(_jobTls);
        using var relay = new RecordingRelay(listener.Port);
        _serverSide.Expected = 2;
        var client = Connect(relay.Port, _jobTls);
        var large = new byte[3 << 20];
        for (int i = 0; i < large.Length; i += Marker.Length)
        {
            Marker.AsSpan(0, Math.Min(Marker.Length, large.Length - i)).CopyTo(large.AsSpan(i));
        }
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, Marker);
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, large);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(Marker, _serverSide.Frames[0].Payload);
        Assert.Equal(large, _serverSide.Frames[1].Payload);
        Assert.True(relay.Recorded > large.Length, $"the relay saw {relay.Recorded} bytes");
        Assert.Equal(-1, relay.IndexOf(Marker)); // neither frame, nor the secret's hello, crossed in the clear
        Assert.Equal(-1, relay.IndexOf("PSAUTH01"u8.ToArray()));
        client.Close("done");
    }

    [Fact]
    public async Task A_peer_without_TLS_is_refused_and_a_TLS_node_cannot_talk_to_a_plain_one()
    {
        using var listener = Listen(_jobTls);
        Assert.Throws<TransportException>(() => Connect(listener.Port, tls: null)); // its hello is not a TLS ClientHello
        await WaitForRefusalsAsync(listener, 1);

        using var plain = Listen(tls: null);
        var refused = Assert.Throws<TransportException>(() => Connect(plain.Port, _jobTls));
        Assert.Contains("TLS with the test server failed", refused.Message);
        Assert.Empty(_serverSide.Frames);
    }

    [Fact]
    public async Task A_certificate_from_another_CA_is_refused_on_both_sides_saying_why()
    {
        using var listener = Listen(_jobTls);
        var refused = Assert.Throws<TransportException>(() => Connect(listener.Port, _otherTls)); // the client refuses the server's certificate
        Assert.Contains("does not chain to the trusted CA", refused.Message);
        Assert.True(refused.IsAuthentication);
        await WaitForRefusalsAsync(listener, 1);

        // A client whose certificate is foreign but which trusts the job's CA: the server refuses it once it asks for client certificates.
        using var strict = Listen(Certificate("job", requireClientCertificate: true));
        string otherCrt = Path.Combine(_dir.FullName, "other.crt");
        var trustingJob = TlsOptions.Load(otherCrt, Path.Combine(_dir.FullName, "other.key"), Path.Combine(_dir.FullName, "job.crt"), requireClientCertificate: false);
        Assert.Throws<TransportException>(() =>
        {
            var connection = Connect(strict.Port, trustingJob);
            connection.Close("should not have connected");
        });
        await WaitForRefusalsAsync(strict, 1);
        Assert.Empty(_serverSide.Frames);
    }

    [Fact]
    public async Task Mutual_TLS_refuses_a_client_that_presents_no_certificate()
    {
        using var strict = Listen(Certificate("job", requireClientCertificate: true));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, strict.Port);
        await using var ssl = new SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "pserver" });
            await ssl.WriteAsync(new byte[64]);
            var buffer = new byte[16];
            if (await ssl.ReadAsync(buffer) == 0)
            {
                throw new IOException("closed");
            }
        });
        await WaitForRefusalsAsync(strict, 1);

        // The same listener lets a node with the job's certificate in.
        _serverSide.Expected = 1;
        var client = Connect(strict.Port, _jobTls);
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, [1, 2, 3]);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(10));
        client.Close("done");
    }

    [Fact]
    public async Task A_silent_peer_is_closed_when_the_TLS_handshake_deadline_passes()
    {
        using var listener = Listen(_jobTls);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, listener.Port);
        var watch = Stopwatch.StartNew();
        await WaitForRefusalsAsync(listener, 1);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(600), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Files_that_are_not_a_certificate_and_key_say_which_file()
    {
        string junk = Path.Combine(_dir.FullName, "junk.pem");
        File.WriteAllText(junk, "not a certificate\n");
        var bad = Assert.Throws<ArgumentException>(() => TlsOptions.Load(junk, junk, null, false));
        Assert.Contains("junk.pem", bad.Message);
        string crt = Path.Combine(_dir.FullName, "job.crt");
        var noKey = Assert.Throws<ArgumentException>(() => TlsOptions.Load(crt, junk, null, false));
        Assert.Contains(crt, noKey.Message);
        var badCa = Assert.Throws<ArgumentException>(() => TlsOptions.Load(crt, Path.Combine(_dir.FullName, "job.key"), junk, false));
        Assert.Contains("--tls-ca", badCa.Message);
    }

    /// <summary>A TCP relay between a client and the listener that records every byte the client sends.</summary>
    private sealed class RecordingRelay : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly MemoryStream _recorded = new();
        private readonly CancellationTokenSource _stop = new();

        public RecordingRelay(int target)
        {
            _listener.Start();
            _ = Task.Run(async () =>
            {
                using var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                using var server = new TcpClient();
                await server.ConnectAsync(IPAddress.Loopback, target, _stop.Token);
                var up = Pump(client.GetStream(), server.GetStream(), record: true);
                var down = Pump(server.GetStream(), client.GetStream(), record: false);
                await Task.WhenAny(up, down);
            });
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public long Recorded
        {
            get
            {
                lock (_recorded)
                {
                    return _recorded.Length;
                }
            }
        }

        public int IndexOf(byte[] needle)
        {
            lock (_recorded)
            {
                return _recorded.GetBuffer().AsSpan(0, (int)_recorded.Length).IndexOf(needle);
            }
        }

        private async Task Pump(NetworkStream from, NetworkStream to, bool record)
        {
            var buffer = new byte[64 << 10];
            try
            {
                int n;
                while ((n = await from.ReadAsync(buffer, _stop.Token)) > 0)
                {
                    if (record)
                    {
                        lock (_recorded)
                        {
                            _recorded.Write(buffer, 0, n);
                        }
                    }
                    await to.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
        }
    }
}
