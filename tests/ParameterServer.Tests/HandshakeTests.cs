using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Tests;

/// <summary>Authentication of every connection (<see cref="Handshake"/>) on real loopback sockets: what gets in and each refusal.</summary>
public sealed class HandshakeTests : IDisposable
{
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef");
    private static readonly byte[] OtherSecret = Encoding.ASCII.GetBytes("fedcba9876543210fedcba9876543210");
    private readonly FrameRecorder _serverSide = new() { Expected = 1 };
    private readonly List<Connection> _accepted = new();
    private readonly Listener _listener;
    private readonly TransportOptions _serverOptions = new() { Secret = Secret, HandshakeTimeout = TimeSpan.FromMilliseconds(500) };

    public HandshakeTests()
    {
        _listener = new Listener("127.0.0.1", 0, s =>
        {
            var connection = new Connection(s, _serverSide, _serverOptions, null, "test peer");
            lock (_accepted)
            {
                _accepted.Add(connection);
            }
            return connection;
        }, null, _serverOptions);
    }

    public void Dispose() => _listener.Dispose();

    private Connection Connect(byte[]? secret) =>
        Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), new TransportOptions { Secret = secret }, null, "the test server");

    private IConnectionStream Raw() => TcpConnections.Instance.Connect("127.0.0.1", _listener.Port, TimeSpan.FromSeconds(5), "the test server");

    private async Task WaitForRefusalsAsync(long count)
    {
        var watch = Stopwatch.StartNew();
        while (_listener.Refused < count)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{_listener.Refused} refusals, expected {count}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task A_peer_with_the_secret_gets_in_with_its_role_proven_and_its_frames_arrive()
    {
        var client = Connect(Secret);
        client.Send(new FrameHeader { Type = MessageType.Heartbeat, SenderId = 7 }, [1, 2, 3]);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([1, 2, 3], _serverSide.Frames.Single().Payload);
        Assert.Equal(NodeRole.Worker, _accepted.Single().AuthenticatedRole);
        Assert.Equal(0, _listener.Refused);
        client.Close("done");
    }

    [Fact]
    public async Task A_wrong_secret_is_refused_on_both_sides_with_a_message_that_says_so()
    {
        var refused = Assert.Throws<TransportException>(() => Connect(OtherSecret));
        Assert.True(refused.IsAuthentication);
        Assert.Contains("same --secret-file", refused.Message);
        await WaitForRefusalsAsync(1);
        Assert.Empty(_accepted);
    }

    [Fact]
    public async Task A_peer_without_a_secret_is_refused_and_a_node_without_one_is_not_trusted()
    {
        var client = Connect(secret: null); // no handshake: its first frame is not a hello
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, new byte[64]);
        await WaitForRefusalsAsync(1);
        Assert.Empty(_accepted);

        // The other way round: a listener without the secret cannot answer the challenge.
        var open = new TransportOptions { Secret = null };
        using var plain = new Listener("127.0.0.1", 0, s => new Connection(s, new FrameRecorder(), open, null, "peer"), null, open);
        var error = Assert.Throws<TransportException>(() => Connection.Connect("127.0.0.1", plain.Port, new FrameRecorder(), new TransportOptions { Secret = Secret, HandshakeTimeout = TimeSpan.FromSeconds(1) }, null, "the plain server"));
        Assert.Contains("the plain server", error.Message);
    }

    [Fact]
    public async Task A_tool_with_only_the_read_only_token_gets_in_as_a_reader_and_a_token_is_no_secret()
    {
        var observer = new TransportOptions { Secret = null, ReadToken = JobSecret.ReadTokenOf(Secret) }.As(NodeRole.Observer);
        var tool = Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), observer, null, "the test server");
        client_Send(tool);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(NodeRole.Reader, _accepted.Single().AuthenticatedRole);
        tool.Close("done");

        // The token proves nothing as a node: used as a secret, the MACs do not match.
        Assert.Throws<TransportException>(() => Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), new TransportOptions { Secret = JobSecret.ReadTokenOf(Secret) }, null, "the test server"));
        // Another job's token is refused.
        var foreign = new TransportOptions { Secret = null, ReadToken = JobSecret.ReadTokenOf(OtherSecret) }.As(NodeRole.Observer);
        Assert.Throws<TransportException>(() => Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), foreign, null, "the test server"));
        await WaitForRefusalsAsync(2);
        Assert.Single(_accepted);
        Assert.NotEqual(Secret, JobSecret.ReadTokenOf(Secret));
        Assert.Equal(64, JobSecret.ReadTokenOf(Secret).Length);

        static void client_Send(Connection c) => c.Send(new FrameHeader { Type = MessageType.Heartbeat }, [9]);
    }

    [Fact]
    public async Task A_recorded_handshake_replayed_on_a_new_connection_is_refused()
    {
        // A legitimate exchange, spoken by hand from the documented format: hello, challenge, proof, verdict.
        byte[] nonce = RandomNumberGenerator.GetBytes(32);
        byte[] hello = [.. "PSAUTH01"u8, (byte)NodeRole.Worker, .. nonce];
        byte[] proof;
        using (var first = Raw())
        {
            first.Write(hello);
            byte[] challenge = ReadExactly(first, 72);
            byte[] serverNonce = challenge[8..40];
            Assert.Equal(Mac("ps-server", nonce, serverNonce), challenge[40..72]);
            proof = Mac("ps-client", nonce, serverNonce);
            first.Write(proof);
            Assert.Equal([1], ReadExactly(first, 1));
        }
        // The same bytes again: the server's nonce is new, so the old proof does not match it.
        using var replay = Raw();
        replay.Write(hello);
        byte[] second = ReadExactly(replay, 72);
        Assert.NotEqual(proof, Mac("ps-client", nonce, second[8..40]));
        replay.Write(proof);
        Assert.Equal([0], ReadExactly(replay, 1));
        await WaitForRefusalsAsync(1);
        Assert.Single(_accepted); // only the first got in
    }

    [Fact]
    public async Task A_silent_peer_is_cut_off_at_the_handshake_deadline_and_holds_no_thread_past_it()
    {
        using var silent = Raw();
        using var halfHello = Raw();
        halfHello.Write("PSAUTH"u8); // slow loris: part of a hello, then nothing
        var watch = Stopwatch.StartNew();
        await WaitForRefusalsAsync(2);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(5));
        Assert.Equal(0, silent.Read(new byte[1])); // the server closed it
        Assert.Empty(_accepted);
    }

    [Fact]
    public async Task Past_the_limit_of_pending_handshakes_new_connections_are_closed_at_once()
    {
        var waiting = Enumerable.Range(0, TransportOptions.MaxPendingHandshakes).Select(_ => Raw()).ToList();
        using var extra = Raw();
        var watch = Stopwatch.StartNew();
        Assert.Equal(0, extra.Read(new byte[1])); // closed before the others' deadline
        Assert.True(watch.Elapsed < TimeSpan.FromMilliseconds(450), $"{watch.Elapsed}");
        await WaitForRefusalsAsync(1 + TransportOptions.MaxPendingHandshakes);
        waiting.ForEach(w => w.Dispose());
    }

    [Fact]
    public void A_listener_on_a_reachable_address_needs_a_secret_or_the_users_word()
    {
        var open = new TransportOptions { Secret = null };
        var refused = Assert.Throws<ArgumentException>(() => new Listener("0.0.0.0", 0, s => null!, null, open));
        Assert.Contains("--secret-file", refused.Message);
        Assert.Contains("--insecure", refused.Message);
        using var insecure = new Listener("0.0.0.0", 0, s => null!, null, new TransportOptions { Secret = null, AllowInsecure = true });
        using var closed = new Listener("0.0.0.0", 0, s => null!, null, new TransportOptions { Secret = Secret });
        using var loopback = new Listener("127.0.0.1", 0, s => null!, null, open);
    }

    [Fact]
    public void A_secret_file_must_hold_enough_bytes_and_a_new_one_is_private()
    {
        string dir = Directory.CreateTempSubdirectory("ps-secret-").FullName;
        try
        {
            string path = Path.Combine(dir, "s");
            JobSecret.Generate(path);
            Assert.Equal(64, JobSecret.Read(path).Length); // the trailing newline is not part of it
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }
            Assert.Throws<IOException>(() => JobSecret.Generate(path)); // never overwritten
            File.WriteAllText(Path.Combine(dir, "short"), "too short\n");
            Assert.Contains("at least 16", Assert.Throws<ArgumentException>(() => JobSecret.Read(Path.Combine(dir, "short"))).Message);
            Assert.Contains("cannot be read", Assert.Throws<ArgumentException>(() => JobSecret.Read(Path.Combine(dir, "missing"))).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static byte[] Mac(string label, byte[] clientNonce, byte[] serverNonce) =>
        HMACSHA256.HashData(Secret, (byte[])[.. Encoding.ASCII.GetBytes(label), (byte)NodeRole.Worker, .. clientNonce, .. serverNonce]);

    private static byte[] ReadExactly(IConnectionStream stream, int count)
    {
        var buffer = new byte[count];
        int read = 0;
        while (read < count)
        {
            int n = stream.Read(buffer.AsSpan(read));
            Assert.True(n > 0, $"closed after {read} of {count} bytes");
            read += n;
        }
        return buffer;
    }
}
