using ParameterServer.Client;
using ParameterServer.Protocol;
using ParameterServer.Scheduler;
using ParameterServer.Server;
using ParameterServer.Transport;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Tests;

/// <summary>The transport's connection-factory seam: the same connections and a whole cluster over in-process pipes, no sockets.</summary>
public sealed class InMemoryTransportTests
{
    private static (TransportOptions Options, InMemoryConnections Pipes) Options()
    {
        var pipes = new InMemoryConnections(64 << 10); // small pipes: writers must wait for the reader
        return (new TransportOptions { MaxFrameBytes = 4 << 20, SendQueueHighWaterBytes = 1 << 16, Connections = pipes }, pipes);
    }

    [Fact]
    public async Task Frames_from_many_threads_and_a_frame_larger_than_the_pipe_arrive_whole_and_in_order()
    {
        var (options, pipes) = Options();
        var server = new FrameRecorder { Expected = (4 * 300) + 1 };
        using var listener = new Listener("127.0.0.1", 0, s => new Connection(s, server, options, null, "test peer"), null, options);
        var client = Connection.Connect("127.0.0.1", listener.Port, new FrameRecorder(), options, null, "server");
        var threads = Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < 300; i++)
            {
                var payload = new byte[(i * 37) % 3000];
                Array.Fill(payload, (byte)t);
                client.Send(new FrameHeader { Type = MessageType.Heartbeat, SenderId = t, RequestId = (ulong)i }, payload);
            }
        })).ToArray();
        await Task.WhenAll(threads);
        var large = Enumerable.Range(0, 900_000).Select(i => (byte)i).ToArray();
        client.Send(new FrameHeader { Type = MessageType.Push, SenderId = 9 }, large);
        await server.AllReceived.Task.WaitAsync(TimeSpan.FromSeconds(20));
        foreach (var group in server.Frames.Where(f => f.Header.SenderId < 4).GroupBy(f => f.Header.SenderId))
        {
            Assert.Equal(Enumerable.Range(0, 300).Select(i => (ulong)i), group.Select(f => f.Header.RequestId));
            Assert.All(group, f => Assert.All(f.Payload, b => Assert.Equal((byte)group.Key, b)));
        }
        Assert.Equal(large, server.Frames.Single(f => f.Header.SenderId == 9).Payload);
        client.Close("done");
    }

    [Fact]
    public async Task A_cut_connection_closes_both_ends_with_a_reason_and_nothing_listening_is_refused()
    {
        var (options, pipes) = Options();
        var server = new FrameRecorder();
        using var listener = new Listener("127.0.0.1", 0, s => new Connection(s, server, options, null, "test peer"), null, options);
        var clientSide = new FrameRecorder();
        var client = Connection.Connect("127.0.0.1", listener.Port, clientSide, options, null, "server 7");
        client.Send(new FrameHeader { Type = MessageType.Heartbeat }, []);
        pipes.Cut(listener.Port);
        Assert.NotEmpty(await clientSide.Closed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.NotEmpty(await server.Closed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("server 7", Assert.Throws<TransportException>(() => client.Send(new FrameHeader { Type = MessageType.Heartbeat }, [])).Message);
        var refused = Assert.Throws<TransportException>(() => Connection.Connect("127.0.0.1", listener.Port + 1000, new FrameRecorder(), options, null, "the scheduler"));
        Assert.Contains("connection refused", refused.Message);
    }

    [Fact]
    public async Task A_whole_cluster_runs_in_process_over_pipes_and_counts_exactly()
    {
        var pipes = new InMemoryConnections();
        TransportOptions Transport() => new() { Connections = pipes };
        await using var scheduler = SchedulerNode.Start(new SchedulerOptions { Port = 0, Servers = 2, Workers = 2, Replication = 2, Transport = Transport(), HeartbeatTimeout = TimeSpan.FromSeconds(10) }); // not declared dead while the other tests load the machine
        string address = $"127.0.0.1:{scheduler.Port}";
        var servers = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => ServerNode.StartAsync(new ServerOptions { Scheduler = address, Transport = Transport() })));
        var clients = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => PsClient.ConnectAsync(new WorkerOptions { Scheduler = address, Transport = Transport(), RequestTimeout = TimeSpan.FromSeconds(10) })));
        try
        {
            ulong[] keys = Enumerable.Range(0, 500).Select(i => (ulong)i * 7919).ToArray();
            var ones = Enumerable.Repeat(1f, keys.Length).ToArray();
            await Task.WhenAll(clients.Select(async c =>
            {
                var table = await c.DeclareTableAsync(new TableSpec("counter"));
                for (int round = 0; round < 20; round++)
                {
                    await table.PushAsync(keys, ones);
                }
                await c.BarrierAsync();
            }));
            var values = new float[keys.Length];
            var counter = await clients[0].DeclareTableAsync(new TableSpec("counter"));
            await counter.PullAsync(keys, values);
            Assert.All(values, v => Assert.Equal(2 * 20, v));
        }
        finally
        {
            foreach (var c in clients)
            {
                await c.DisposeAsync();
            }
            foreach (var s in servers)
            {
                await s.DisposeAsync();
            }
        }
    }
}
