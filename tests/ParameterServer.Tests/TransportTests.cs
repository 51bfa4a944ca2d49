using System.Net;
using System.Net.Sockets;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

/// <summary>Connections over real loopback sockets inside one process.</summary>
public sealed class TransportTests : IDisposable
{
    private readonly FrameRecorder _serverSide = new();
    private readonly Listener _listener;
    private readonly TransportOptions _options = new() { MaxFrameBytes = 1 << 20, SendQueueHighWaterBytes = 1 << 16 };

    public TransportTests()
    {
        _listener = new Listener("127.0.0.1", 0, s => new Connection(s, _serverSide, _options, null, "test peer"), null, _options);
    }

    public void Dispose() => _listener.Dispose();

    [Fact]
    public async Task Many_frames_from_many_threads_arrive_whole_and_in_per_thread_order()
    {
        _serverSide.Expected = 4 * 500;
        var client = Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), _options, null, "server");
        var threads = Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < 500; i++)
            {
                var payload = new byte[(i * 37) % 3000];
                Array.Fill(payload, (byte)t);
                client.Send(new FrameHeader { Type = MessageType.Heartbeat, SenderId = t, RequestId = (ulong)i }, payload);
            }
        })).ToArray();
        await Task.WhenAll(threads);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(20));
        foreach (var group in _serverSide.Frames.GroupBy(f => f.Header.SenderId))
        {
            Assert.Equal(Enumerable.Range(0, 500).Select(i => (ulong)i), group.Select(f => f.Header.RequestId));
            Assert.All(group, f => Assert.All(f.Payload, b => Assert.Equal((byte)group.Key, b)));
            Assert.All(group, f => Assert.Equal((int)(f.Header.RequestId * 37 % 3000), f.Payload.Length));
        }
        client.Close("done");
    }

    [Theory]
    [InlineData(1000)] // batched frames, written by whoever flushes
    [InlineData(300_000)] // large frames, written straight from the caller
    public async Task A_peer_that_stops_reading_fails_its_connection_after_the_send_timeout_instead_of_holding_the_sender(int frameBytes)
    {
        // A peer that accepted the connection and then hangs (SIGSTOP, a frozen VM): its socket buffers fill, and no
        // write may then wait on it for longer than the send timeout.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var options = new TransportOptions { SendTimeout = TimeSpan.FromMilliseconds(300) };
        var recorder = new FrameRecorder();
        var client = Connection.Connect("127.0.0.1", ((IPEndPoint)silent.LocalEndpoint).Port, recorder, options, null, "a hung server");
        using var accepted = await silent.AcceptSocketAsync();
        var payload = new byte[frameBytes];
        var frame = new byte[FrameHeader.Size + frameBytes];
        new FrameHeader { Type = MessageType.Push, PayloadLength = frameBytes }.Write(frame);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var failed = await Task.Run(() =>
        {
            while (started.Elapsed < TimeSpan.FromSeconds(20))
            {
                try
                {
                    if (frame.Length >= Connection.LargeFrameBytes)
                    {
                        client.SendFrame(frame, frame.Length);
                    }
                    else
                    {
                        client.Send(new FrameHeader { Type = MessageType.Push }, payload);
                    }
                }
                catch (TransportException ex)
                {
                    return ex;
                }
            }
            return null;
        });
        Assert.NotNull(failed);
        string reason = await recorder.Closed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Contains("took no bytes for 0.3 s", reason, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"the sender was held {started.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task A_frame_larger_than_the_receive_buffer_is_reassembled()
    {
        _serverSide.Expected = 1;
        var client = Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), _options, null, "server");
        var payload = Enumerable.Range(0, 900_000).Select(i => (byte)i).ToArray();
        client.Send(new FrameHeader { Type = MessageType.Push }, payload);
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(payload, _serverSide.Frames[0].Payload);
    }

    [Fact]
    public async Task Garbage_bytes_close_the_connection_with_a_reason()
    {
        using var raw = new TcpClient();
        await raw.ConnectAsync(IPAddress.Loopback, _listener.Port);
        await raw.GetStream().WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray().Concat(new byte[64]).ToArray());
        string reason = await _serverSide.Closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("bad magic", reason);
    }

    [Fact]
    public async Task An_oversized_frame_is_refused_before_its_payload_is_read()
    {
        using var raw = new TcpClient();
        await raw.ConnectAsync(IPAddress.Loopback, _listener.Port);
        var header = new byte[FrameHeader.Size];
        new FrameHeader { Type = MessageType.Push, PayloadLength = int.MaxValue - 64 }.Write(header);
        await raw.GetStream().WriteAsync(header); // no payload follows: the check must not wait for it
        string reason = await _serverSide.Closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("exceeds the limit", reason);
    }

    [Fact]
    public async Task Sending_on_a_closed_connection_names_the_peer()
    {
        var client = Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), _options, null, "server 9");
        client.Close("test");
        var ex = Assert.Throws<TransportException>(() => client.Send(new FrameHeader { Type = MessageType.Heartbeat }, []));
        Assert.Contains("server 9", ex.Message);
        await Task.CompletedTask;
    }

    [Fact]
    public void Connecting_to_a_closed_port_fails_fast_with_the_cause()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var ex = Assert.Throws<TransportException>(() => Connection.Connect("127.0.0.1", port, new FrameRecorder(), _options, null, "the scheduler"));
        Assert.Contains("connection refused", ex.Message);
        Assert.Contains("the scheduler", ex.Message);
    }
}
