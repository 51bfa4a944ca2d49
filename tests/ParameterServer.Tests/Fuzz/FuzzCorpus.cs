using ParameterServer.Client;
using ParameterServer.Protocol;
using ParameterServer.Scheduler;
using ParameterServer.Server;
using ParameterServer.Transport;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Tests.Fuzz;

/// <summary>
/// The fuzzer's seeds: every frame a scheduler and two servers receive while a worker does a bit of everything (plain,
/// compressed, cached-key and range pushes and pulls, int64 tables, vector operations, barriers, work units, scans,
/// server stats, chain replication), recorded below the connections as the bytes arrived.
/// </summary>
internal static class FuzzCorpus
{
    private static List<byte[]>? s_frames;
    private static readonly SemaphoreSlim s_once = new(1, 1);

    public static async Task<List<byte[]>> RecordAsync()
    {
        await s_once.WaitAsync();
        try
        {
            return s_frames ??= await RecordOnceAsync();
        }
        finally
        {
            s_once.Release();
        }
    }

    /// <summary>The tables the workload declares, in its order (a live node given the recorded frames then knows their ids).</summary>
    public static async Task<PsTable[]> DeclareTablesAsync(PsClient client) =>
    [
        await client.DeclareTableAsync(new TableSpec("plain", 2)),
        await client.DeclareTableAsync(new TableSpec("coded", 4) { Compression = "fp16", KeyCaching = true }),
        await client.DeclareTableAsync(new TableSpec("lz", 3) { Compression = "lz" }),
        await client.DeclareTableAsync(new TableSpec("counts") { ElementType = ElementType.Int64 }),
        await client.DeclareTableAsync(new TableSpec("dense-a", 1) { DenseSize = 64, BlockKeys = 8, PlacementGroup = "g" }),
        await client.DeclareTableAsync(new TableSpec("dense-b", 1) { DenseSize = 64, BlockKeys = 8, PlacementGroup = "g" }),
        await client.DeclareTableAsync(new TableSpec("topk", 8) { Compression = "topk:0.5" }),
    ];

    private static async Task<List<byte[]>> RecordOnceAsync()
    {
        var recorder = new RecordingConnections();
        var transport = new TransportOptions { Secret = null, Connections = recorder };
        await using var scheduler = SchedulerNode.Start(new SchedulerOptions { Port = 0, Servers = 2, Workers = 1, Replication = 2, Transport = transport });
        string address = $"127.0.0.1:{scheduler.Port}";
        await using var first = await ServerNode.StartAsync(new ServerOptions { Scheduler = address, Transport = transport });
        await using var second = await ServerNode.StartAsync(new ServerOptions { Scheduler = address, Transport = transport });
        await using (var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = address, Transport = transport }))
        {
            var t = await DeclareTablesAsync(client);
            ulong[] keys = [1, 5, 9, 1000, 1UL << 40];
            for (int round = 0; round < 2; round++) // the second time, cached keys go as signatures
            {
                await client.WaitAsync(t[0].Push(keys, Enumerable.Range(0, 10).Select(i => (float)i).ToArray()));
                await client.WaitAsync(t[0].Pull(keys, new float[10]));
                await client.WaitAsync(t[0].PushPull(keys, new float[10], new float[10]));
                await client.WaitAsync(t[1].Push(keys, Enumerable.Range(0, 20).Select(i => i * 0.5f).ToArray()));
                await client.WaitAsync(t[1].Pull(keys, new float[20]));
                await client.WaitAsync(t[2].Push(keys, new float[15]));
                await client.WaitAsync(t[3].PushInt64(keys, [1, 2, 3, 4, 5]));
                await client.WaitAsync(t[3].PullInt64(keys, new long[5]));
                await client.WaitAsync(t[6].Push(keys, Enumerable.Range(0, 40).Select(i => (float)Math.Sin(i)).ToArray()));
            }
            await client.WaitAsync(t[4].PushRange(0, Enumerable.Range(0, 64).Select(i => (float)i).ToArray()));
            await client.WaitAsync(t[4].PullRange(8, new float[16]));
            await client.RunVectorOpsAsync([VectorOp.Dot(t[4], t[5]), VectorOp.Axpy(t[5], 2, t[4]), VectorOp.Norm1(t[5]), VectorOp.PseudoGradient(t[5], t[4], 0.1)]);
            await client.BarrierAsync();
            await client.DeclareWorkRoundAsync(0, 2, TimeSpan.FromSeconds(5));
            while (await client.ClaimWorkAsync() is int unit)
            {
                await client.CompleteWorkAsync(unit);
            }
            _ = await t[0].ReadAllAsync();
            _ = await client.GetServerStatsAsync();
        }
        return recorder.Frames();
    }

    /// <summary>TCP, with every accepted connection's incoming bytes kept.</summary>
    private sealed class RecordingConnections : IConnectionFactory
    {
        private readonly List<RecordingStream> _accepted = new();

        public IConnectionStream Connect(string host, int port, TimeSpan timeout, string peer, CancellationToken cancellation = default) =>
            TcpConnections.Instance.Connect(host, port, timeout, peer, cancellation);

        public IAcceptor Listen(string host, int port) => new Acceptor(this, TcpConnections.Instance.Listen(host, port));

        public List<byte[]> Frames()
        {
            var frames = new List<byte[]>();
            lock (_accepted)
            {
                foreach (var stream in _accepted)
                {
                    byte[] bytes = stream.Received();
                    for (int at = 0; FrameHeader.TryRead(bytes.AsSpan(at), int.MaxValue, out var header, out _) == HeaderStatus.Ok && at + header.FrameLength <= bytes.Length; at += header.FrameLength)
                    {
                        frames.Add(bytes[at..(at + header.FrameLength)]);
                    }
                }
            }
            return frames;
        }

        private sealed class Acceptor(RecordingConnections owner, IAcceptor inner) : IAcceptor
        {
            public int Port => inner.Port;

            public IConnectionStream Accept()
            {
                var stream = new RecordingStream(inner.Accept());
                lock (owner._accepted)
                {
                    owner._accepted.Add(stream);
                }
                return stream;
            }

            public void Dispose() => inner.Dispose();
        }
    }

    private sealed class RecordingStream(IConnectionStream inner) : IConnectionStream
    {
        private readonly MemoryStream _received = new();

        public byte[] Received()
        {
            lock (_received)
            {
                return _received.ToArray();
            }
        }

        public string? RemoteAddress => inner.RemoteAddress;

        public bool SupportsPartialWrites => inner.SupportsPartialWrites;

        public TimeSpan WriteStallTimeout
        {
            get => inner.WriteStallTimeout;
            set => inner.WriteStallTimeout = value;
        }

        public bool BytesWaiting => inner.BytesWaiting;

        public int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            lock (_received)
            {
                _received.Write(buffer[..n]);
            }
            return n;
        }

        public void Write(ReadOnlySpan<byte> data) => inner.Write(data);

        public void WriteAll(ReadOnlySpan<byte> data, bool more) => inner.WriteAll(data, more);

        public int TryWriteNow(ReadOnlySpan<byte> data) => inner.TryWriteNow(data);

        public int WriteUntil(ReadOnlySpan<byte> data, long deadline) => inner.WriteUntil(data, deadline);

        public void Shutdown() => inner.Shutdown();

        public void Dispose() => inner.Dispose();
    }
}
