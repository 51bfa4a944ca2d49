using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;
using ParameterServer.Scheduler;
using ParameterServer.Server;
using ParameterServer.Transport;
using Xunit.Abstractions;

namespace ParameterServer.Tests.Fuzz;

/// <summary>
/// Mutations of valid frames of every message type (bit flips, truncation, lengths, counts, flags, codec sections), fed
/// to the decoders and to a live server: nothing may escape but a clean refusal, allocate beyond a bound, or take the
/// node down. The corpus is recorded from a live job. Short by default (1M decoder cases, 20k live ones); set
/// PS_FUZZ_CASES and PS_FUZZ_LIVE_CASES (and PS_FUZZ_SEED) for a long run. A case that fails is written to
/// Fuzz/crashes (the message names the file); commit it, and <see cref="Every_kept_crash_replays_as_a_clean_refusal_within_bounded_allocation"/>
/// keeps it fixed.
/// </summary>
public sealed class ProtocolFuzzTests(ITestOutputHelper output)
{
    private const int MaxFrameBytes = 1 << 20;

    private static int Setting(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out int n) ? n : fallback;

    private static string CrashDir => Path.Combine(SourceDir(), "crashes");

    [Fact]
    public async Task Mutated_frames_of_every_message_type_get_only_clean_refusals_from_the_decoders_within_bounded_allocation()
    {
        var corpus = await FuzzCorpus.RecordAsync();
        var types = corpus.Select(TypeOf).ToHashSet();
        foreach (var type in new[] { MessageType.Register, MessageType.DeclareTable, MessageType.Heartbeat, MessageType.Barrier, MessageType.Push,
            MessageType.Pull, MessageType.PushPull, MessageType.VectorOps, MessageType.Scan, MessageType.ClaimWork, MessageType.Replicate, MessageType.ServerStats })
        {
            Assert.True(types.Contains(type), $"the recorded corpus has no {type} frame: {string.Join(", ", types)}");
        }
        Assert.Contains(corpus, f => FrameFlagsOf(f).HasFlag(FrameFlags.Compressed));
        Assert.Contains(corpus, f => FrameFlagsOf(f).HasFlag(FrameFlags.KeysCached));

        int cases = Setting("PS_FUZZ_CASES", 1_000_000);
        int seed = Setting("PS_FUZZ_SEED", 1);
        var random = new Random(seed);
        var decoder = new FrameDecoder();
        var outcomes = new Dictionary<string, int>();
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < cases; i++)
        {
            byte[] frame = Mutator.Mutate(corpus[random.Next(corpus.Count)], random, keepLengthConsistent: random.Next(2) == 0);
            long before = GC.GetAllocatedBytesForCurrentThread();
            string outcome;
            try
            {
                outcome = decoder.Decode(frame);
            }
            catch (Exception ex) when (FrameDecoder.IsCleanRefusal(ex))
            {
                outcome = ex.GetType().Name;
            }
            catch (Exception ex)
            {
                Assert.Fail($"case {i} (seed {seed}): {ex.GetType().Name}: {ex.Message}; kept in {Keep(frame)}\n{ex.StackTrace}");
                throw;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (allocated > FrameDecoder.AllocationBound(frame.Length))
            {
                Assert.Fail($"case {i} (seed {seed}): decoding a {frame.Length}-byte frame allocated {allocated} bytes; kept in {Keep(frame)}");
            }
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        output.WriteLine($"{cases:N0} cases from {corpus.Count} recorded frames in {watch.Elapsed.TotalSeconds:0.0} s: " +
            string.Join(", ", outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value:N0}")));
        Assert.True(outcomes.GetValueOrDefault("ok") > cases / 100, "almost no mutation decoded: the mutator is too destructive to reach the decoders");
    }

    [Fact]
    public async Task Mutated_frames_sent_to_a_live_server_leave_it_serving_with_no_error_logged()
    {
        var corpus = (await FuzzCorpus.RecordAsync()).Where(f => !IsControl(f)).ToList();
        await using var job = await LiveJob.StartAsync();
        var (server, client, logs) = (job.Server, job.Client, job.Logs);

        int cases = Setting("PS_FUZZ_LIVE_CASES", 20_000);
        SendMutated(corpus, server.Port, cases, new Random(Setting("PS_FUZZ_SEED", 1)), logs);

        // Still serving, correctly.
        var check = await client.DeclareTableAsync(new TableSpec("after-fuzz", 2));
        await client.WaitAsync(check.Push([3, 7], [1, 2, 3, 4]));
        var values = new float[4];
        await client.WaitAsync(check.Pull([3, 7], values));
        Assert.Equal([1f, 2, 3, 4], values);
        Assert.True(logs.Errors.IsEmpty, "errors logged:\n" + string.Join("\n", logs.Errors));
    }

    /// <summary>Frames a worker sends the scheduler (the rest go to servers).</summary>
    private static bool IsControl(byte[] frame) => TypeOf(frame) is MessageType.Register or MessageType.Heartbeat or MessageType.Barrier
        or MessageType.DeclareTable or MessageType.DeclareWork or MessageType.ClaimWork or MessageType.CompleteWork or MessageType.Status;

    /// <summary>A scheduler, a server and a worker in this process, without a secret, the corpus's tables declared.</summary>
    private sealed class LiveJob : IAsyncDisposable
    {
        public required SchedulerNode Scheduler { get; init; }

        public required ServerNode Server { get; init; }

        public required PsClient Client { get; init; }

        public required CountingLoggers Logs { get; init; }

        public string Address => $"127.0.0.1:{Scheduler.Port}";

        public static async Task<LiveJob> StartAsync()
        {
            var logs = new CountingLoggers();
            var transport = new TransportOptions { Secret = null, MaxFrameBytes = MaxFrameBytes };
            var scheduler = SchedulerNode.Start(new SchedulerOptions { Port = 0, Servers = 1, Workers = 1, Transport = transport, HeartbeatTimeout = TimeSpan.FromSeconds(30) }, logs);
            string address = $"127.0.0.1:{scheduler.Port}";
            var server = await ServerNode.StartAsync(new ServerOptions { Scheduler = address, Transport = transport }, logs);
            var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = address, Transport = transport });
            await FuzzCorpus.DeclareTablesAsync(client); // the recorded frames name these tables: mutations reach the handlers
            return new LiveJob { Scheduler = scheduler, Server = server, Client = client, Logs = logs };
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Server.DisposeAsync();
            await Scheduler.DisposeAsync();
        }
    }

    /// <summary>Sends <paramref name="cases"/> mutated frames of <paramref name="corpus"/> to the node on <paramref name="port"/>, reconnecting whenever it closes the connection.</summary>
    private void SendMutated(List<byte[]> corpus, int port, int cases, Random random, CountingLoggers logs)
    {
        TcpClient? peer = null;
        int reconnects = 0;
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < cases; i++)
        {
            byte[] frame = Mutator.Mutate(corpus[random.Next(corpus.Count)], random, keepLengthConsistent: true);
            for (int attempt = 0; ; attempt++)
            {
                if (peer is null)
                {
                    peer = new TcpClient { NoDelay = true };
                    peer.Connect(IPAddress.Loopback, port);
                    reconnects++;
                }
                try
                {
                    peer.GetStream().Write(frame);
                    Drain(peer);
                    break;
                }
                catch (IOException) when (attempt < 3)
                {
                    peer.Dispose(); // the node closed it (a protocol error): a new connection for the next frame
                    peer = null;
                }
            }
        }
        peer?.Dispose();
        output.WriteLine($"{cases:N0} live cases in {watch.Elapsed.TotalSeconds:0.0} s over {reconnects:N0} connections; warnings logged: {logs.Warnings}");
    }

    [Fact]
    public async Task Mutated_control_frames_sent_to_a_live_scheduler_leave_it_answering_with_nothing_failed_inside()
    {
        var corpus = (await FuzzCorpus.RecordAsync()).Where(IsControl).ToList();
        Assert.NotEmpty(corpus);
        await using var job = await LiveJob.StartAsync();
        var (scheduler, server, logs, address) = (job.Scheduler, job.Server, job.Logs, job.Address);

        SendMutated(corpus, scheduler.Port, Setting("PS_FUZZ_LIVE_CASES", 20_000) / 2, new Random(Setting("PS_FUZZ_SEED", 1) + 1), logs);

        // Still answering, with the real server among its nodes, unless the job ended: without a secret every peer is a
        // member, so a mutated frame may legitimately register nodes (whose loss ends the job, logged as an error), or
        // drain or shut down the real ones. What is checked is that nothing failed inside the scheduler.
        ParameterServer.Client.ClusterStatus? status;
        try
        {
            status = await ParameterServer.Client.ClusterAdmin.StatusAsync(address, TimeSpan.FromSeconds(10), CancellationToken.None);
        }
        catch (PsException)
        {
            // Not answering is allowed only while the job ends (a fake member's loss ends an open job): it must end.
            await scheduler.Completion.WaitAsync(TimeSpan.FromSeconds(60));
            status = null;
        }
        if (status is not null)
        {
            using var json = System.Text.Json.JsonDocument.Parse(status.ToJson());
            Assert.Contains(json.RootElement.GetProperty("nodes").EnumerateArray(), n => n.GetProperty("id").GetInt32() == server.Id);
        }
        Assert.True(logs.Failures.IsEmpty, "failures logged:\n" + string.Join("\n", logs.Failures));
    }

    [Fact]
    public void Every_kept_crash_replays_as_a_clean_refusal_within_bounded_allocation()
    {
        var decoder = new FrameDecoder();
        var files = Directory.Exists(CrashDir) ? Directory.GetFiles(CrashDir, "*.bin") : [];
        foreach (string file in files)
        {
            byte[] frame = File.ReadAllBytes(file);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                decoder.Decode(frame);
            }
            catch (Exception ex) when (FrameDecoder.IsCleanRefusal(ex))
            {
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated <= FrameDecoder.AllocationBound(frame.Length), $"{file}: decoding its {frame.Length} bytes allocated {allocated}");
        }
        output.WriteLine($"{files.Length} kept cases replayed");
    }

    private static void Drain(TcpClient peer)
    {
        var stream = peer.GetStream();
        var sink = new byte[64 << 10];
        while (peer.Available > 0)
        {
            _ = stream.Read(sink);
        }
    }

    private static MessageType TypeOf(byte[] frame) => FrameHeader.TryRead(frame, int.MaxValue, out var h, out _) == HeaderStatus.Ok ? h.Type : 0;

    private static FrameFlags FrameFlagsOf(byte[] frame) => FrameHeader.TryRead(frame, int.MaxValue, out var h, out _) == HeaderStatus.Ok ? h.Flags : FrameFlags.None;

    private static string Keep(byte[] frame)
    {
        Directory.CreateDirectory(CrashDir);
        string path = Path.Combine(CrashDir, $"{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(frame))[..16]}.bin");
        File.WriteAllBytes(path, frame);
        return path;
    }

    private static string SourceDir([System.Runtime.CompilerServices.CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    /// <summary>Loggers that keep every error (and count warnings) a node logs.</summary>
    private sealed class CountingLoggers : ILoggerFactory, ILogger
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Errors { get; } = new();

        /// <summary>Errors that carry an exception, or critical ones: something failed inside, not a refusal or a job's fate.</summary>
        public System.Collections.Concurrent.ConcurrentQueue<string> Failures { get; } = new();

        private int _warnings;

        public int Warnings => _warnings;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public ILogger CreateLogger(string categoryName) => this;

        public void Dispose()
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Error)
            {
                Errors.Enqueue($"{eventId}: {formatter(state, exception)} {exception}");
                if (exception is not null || logLevel == LogLevel.Critical)
                {
                    Failures.Enqueue($"{eventId}: {formatter(state, exception)} {exception}");
                }
            }
            else if (logLevel == LogLevel.Warning)
            {
                Interlocked.Increment(ref _warnings);
            }
        }
    }
}

/// <summary>The decoders a node runs on a frame before any state changes, called as the node calls them.</summary>
internal sealed class FrameDecoder
{
    private readonly ReceiverKeyCache _keys = new(1 << 20);

    /// <summary>
    /// The most a decoder may allocate for a frame of this many bytes: a small multiple of it, plus one buffer of the
    /// largest frame the node accepts (MaxFrameBytes, here 1 MiB): an encoded frame decodes into a pooled plain frame
    /// of its stated size, which the node's frame limit bounds whatever the frame's own size.
    /// </summary>
    public static long AllocationBound(int frameBytes) => (64 << 10) + (16L * frameBytes) + (1 << 20);

    /// <summary>A refusal the node turns into an error answer or a closed connection.</summary>
    public static bool IsCleanRefusal(Exception ex) => ex is ProtocolException;

    /// <summary>"ok", or why the frame was refused without an exception.</summary>
    public string Decode(byte[] frame)
    {
        var status = FrameHeader.TryRead(frame, 1 << 20, out var header, out _);
        if (status != HeaderStatus.Ok)
        {
            return $"header {status}";
        }
        if (frame.Length < header.FrameLength)
        {
            return "incomplete";
        }
        var payload = frame.AsSpan(FrameHeader.Size, header.PayloadLength);
        switch (header.Type)
        {
            case MessageType.Register:
                _ = ControlMessages.ReadRegister(payload);
                break;
            case MessageType.DeclareTable:
                _ = ControlMessages.ReadTableSpec(payload);
                break;
            case MessageType.View:
                _ = ClusterView.Read(payload);
                break;
            case MessageType.Heartbeat:
                if (payload.Length > 0)
                {
                    var r = new PayloadReader(payload);
                    _ = TrafficSnapshot.Read(ref r);
                    if (r.Remaining > 0)
                    {
                        _ = NodeReport.Read(ref r);
                    }
                }
                break;
            case MessageType.Barrier or MessageType.DeclareWork or MessageType.ClaimWork or MessageType.CompleteWork or MessageType.Rejoin or MessageType.Drain or MessageType.Rebalance:
                _ = ControlMessages.ReadInts(payload, payload.Length / sizeof(int));
                break;
            case MessageType.VectorOps:
                _ = VectorProgramCodec.Read(payload);
                break;
            case MessageType.Push or MessageType.Pull or MessageType.PushPull or MessageType.Replicate or MessageType.Refill:
                return DecodeData(header, payload);
            default:
                return "not decoded";
        }
        return "ok";
    }

    private string DecodeData(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var plainHeader = header;
        byte[]? plain = null;
        try
        {
            if ((header.Flags & FrameFlags.Encoded) != 0)
            {
                var result = WireEncoding.Decode(header, payload, _keys, 1 << 20, out plainHeader, out plain, out _);
                if (result != WireEncoding.DecodeResult.Ok)
                {
                    return $"data {result}";
                }
                payload = plain.AsSpan(FrameHeader.Size, plainHeader.PayloadLength);
            }
            if (DataPayload.Validate(plainHeader) is not null)
            {
                return "data invalid";
            }
            long expected = DataPayload.KeySectionBytes(plainHeader.KeyCount, (plainHeader.Flags & FrameFlags.KeyRange) != 0)
                + (DataPayload.CarriesValues(plainHeader.Type) ? DataPayload.ValueSectionBytes(plainHeader.KeyCount, plainHeader.RowWidth) : 0);
            if (payload.Length != expected)
            {
                return "data length";
            }
            var keys = DataPayload.Keys(plainHeader, payload);
            _ = keys.Count;
            _ = DataPayload.Values(plainHeader, payload).Length;
            return "ok";
        }
        finally
        {
            if (plain is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(plain);
            }
        }
    }
}

/// <summary>Mutations of one frame: bit flips, byte values, truncation and extension, header fields, flags.</summary>
internal static class Mutator
{
    public static byte[] Mutate(byte[] seed, Random random, bool keepLengthConsistent)
    {
        var frame = (byte[])seed.Clone();
        int mutations = 1 + random.Next(3);
        for (int m = 0; m < mutations; m++)
        {
            frame = random.Next(8) switch
            {
                0 => FlipBit(frame, random),
                1 => SetByte(frame, random),
                2 => frame[..random.Next(frame.Length + 1)], // truncate
                3 => [.. frame, .. RandomBytes(random, random.Next(64))], // extend
                4 or 5 => EditHeader(frame, random),
                _ => FlipPayloadBit(frame, random),
            };
        }
        if (keepLengthConsistent && frame.Length >= FrameHeader.Size && FrameHeader.TryRead(frame, int.MaxValue, out var header, out _) is HeaderStatus.Ok or HeaderStatus.Incomplete)
        {
            header.PayloadLength = frame.Length - FrameHeader.Size; // complete: the decoders, not the length check, see it
            header.Write(frame);
        }
        return frame;
    }

    private static byte[] FlipBit(byte[] frame, Random random)
    {
        if (frame.Length > 0)
        {
            int at = random.Next(frame.Length);
            frame[at] ^= (byte)(1 << random.Next(8));
        }
        return frame;
    }

    private static byte[] FlipPayloadBit(byte[] frame, Random random)
    {
        if (frame.Length > FrameHeader.Size)
        {
            int at = FrameHeader.Size + random.Next(frame.Length - FrameHeader.Size);
            frame[at] ^= (byte)(1 << random.Next(8));
        }
        return frame;
    }

    private static byte[] SetByte(byte[] frame, Random random)
    {
        if (frame.Length > 0)
        {
            frame[random.Next(frame.Length)] = random.Next(3) switch { 0 => 0, 1 => 0xFF, _ => (byte)random.Next(256) };
        }
        return frame;
    }

    private static byte[] RandomBytes(Random random, int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A header that parses, with one field set to an edge value: counts, widths, lengths, flags, types, codecs.</summary>
    private static byte[] EditHeader(byte[] frame, Random random)
    {
        if (frame.Length < FrameHeader.Size || FrameHeader.TryRead(frame, int.MaxValue, out var header, out _) is not (HeaderStatus.Ok or HeaderStatus.Incomplete))
        {
            return frame;
        }
        int[] edges = [0, 1, -1, 2, 3, 7, 8, 63, 64, 65, 255, 4096, int.MaxValue, int.MinValue, 1 << 20, (1 << 20) + 1];
        int edge = edges[random.Next(edges.Length)];
        switch (random.Next(9))
        {
            case 0:
                header.KeyCount = random.Next(2) == 0 ? edge : header.KeyCount + random.Next(-2, 3);
                break;
            case 1:
                header.RowWidth = random.Next(2) == 0 ? edge : header.RowWidth + random.Next(-2, 3);
                break;
            case 2:
                header.PayloadLength = Math.Max(0, random.Next(2) == 0 ? edge : header.PayloadLength + random.Next(-8, 9));
                break;
            case 3:
                header.Flags ^= (FrameFlags)(1 << random.Next(10));
                break;
            case 4:
                header.Type = (MessageType)random.Next(34);
                break;
            case 5:
                header.ElementType = (WireElementType)random.Next(6);
                break;
            case 6:
                header.AnswerCodec = (byte)random.Next(256);
                break;
            case 7:
                header.TableId = random.Next(2) == 0 ? edge : header.TableId + random.Next(-2, 3);
                break;
            default:
                header.Round = random.Next(2) == 0 ? edge : header.Round + random.Next(-2, 3);
                break;
        }
        header.Write(frame);
        return frame;
    }
}
