using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

/// <summary>What a misbehaving peer may cost a node, on real loopback sockets: frames that never finish, too many connections.</summary>
public sealed class ConnectionLimitTests : IDisposable
{
    private readonly FrameRecorder _serverSide = new();
    private readonly Listener _listener;
    private readonly TransportOptions _options = new() { FrameTimeout = TimeSpan.FromMilliseconds(300), MaxConnectionsPerAddress = 3 };

    public ConnectionLimitTests()
    {
        _listener = new Listener("127.0.0.1", 0, s => new Connection(s, _serverSide, _options, null, "test peer"), null, _options);
    }

    public void Dispose() => _listener.Dispose();

    private async Task<TcpClient> RawAsync()
    {
        var raw = new TcpClient { NoDelay = true };
        await raw.ConnectAsync(IPAddress.Loopback, _listener.Port);
        return raw;
    }

    private static byte[] Header(int payload)
    {
        var header = new byte[FrameHeader.Size];
        new FrameHeader { Type = MessageType.Push, PayloadLength = payload }.Write(header);
        return header;
    }

    [Fact]
    public async Task A_frame_that_stops_half_way_closes_its_connection_at_the_frame_deadline()
    {
        using var raw = await RawAsync();
        await raw.GetStream().WriteAsync((byte[])[.. Header(100), .. new byte[10]]); // 10 of 100 payload bytes, then nothing
        var watch = Stopwatch.StartNew();
        string reason = await _serverSide.Closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("did not complete within", reason, StringComparison.Ordinal);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_sender_trickling_a_frame_byte_by_byte_is_cut_off_although_bytes_keep_coming()
    {
        using var raw = await RawAsync();
        byte[] frame = [.. Header(1000), .. new byte[1000]];
        var watch = Stopwatch.StartNew();
        var closed = _serverSide.Closed.Task;
        for (int i = 0; i < frame.Length && !closed.IsCompleted && watch.Elapsed < TimeSpan.FromSeconds(10); i++)
        {
            try
            {
                await raw.GetStream().WriteAsync(frame.AsMemory(i, 1));
            }
            catch (IOException)
            {
                break;
            }
            await Task.Delay(50);
        }
        string reason = await closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Contains("a slow or stuck sender", reason, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), $"{watch.Elapsed}");
    }

    [Fact]
    public async Task Frames_that_arrive_whole_are_never_cut_however_long_the_connection_idles_between_them()
    {
        _serverSide.Expected = 2;
        var client = Connection.Connect("127.0.0.1", _listener.Port, new FrameRecorder(), _options, null, "server");
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, new byte[100]);
        await Task.Delay(1500); // idle: no frame in progress
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, new byte[200_000]); // large, read in place
        await _serverSide.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(_serverSide.Closed.Task.IsCompleted);
        client.Close("done");
    }

    [Fact]
    public async Task An_address_past_its_connection_limit_is_closed_at_once_and_may_connect_again_when_one_closes()
    {
        var clients = new List<TcpClient>();
        for (int i = 0; i < 3; i++)
        {
            clients.Add(await RawAsync());
        }
        await WaitAsync(() => _listener.ConnectionsFrom("127.0.0.1") == 3);
        using (var fourth = await RawAsync())
        {
            fourth.ReceiveTimeout = 5000;
            Assert.Equal(0, fourth.GetStream().Read(new byte[1])); // closed by the node
        }
        Assert.Equal(1, _listener.Refused);
        clients[0].Dispose(); // the node notices, and counts it out
        await WaitAsync(() => _listener.ConnectionsFrom("127.0.0.1") == 2);
        using var again = await RawAsync();
        await WaitAsync(() => _listener.ConnectionsFrom("127.0.0.1") == 3);
        Assert.Equal(1, _listener.Refused);
        clients.ForEach(c => c.Dispose());
    }

    private static async Task WaitAsync(Func<bool> condition)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), "the condition did not hold within 10 s");
            await Task.Delay(10);
        }
    }
}
