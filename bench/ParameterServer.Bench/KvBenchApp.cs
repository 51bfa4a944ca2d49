using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Hosting;

namespace ParameterServer.Bench;

/// <summary>
/// The load generator of `pserver bench kv`, run by every worker. For each case of the plan the workers meet at a
/// barrier, then each keeps <see cref="BenchCase.Window"/> requests in flight (the table's bounded delay is the
/// window) for a warm-up and the measured duration, and prints one JSON line: requests and value bytes completed
/// inside the measured interval and a latency histogram (issue to completion, for calls completed inside it).
/// Requests rotate over the servers; each worker uses its own keys on each server, so workers do not share rows.
/// </summary>
public sealed class KvBenchApp(KvBenchPlan plan) : IPsApp
{
    public string Name => "bench";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        plan.Validate();
        var client = context.Client;
        var recorder = new Recorder();
        client.Diagnostics.CallObserver = recorder;
        try
        {
            foreach (var group in plan.Cases().GroupBy(c => (c.SizeBytes, c.KeysPerRequest)))
            {
                var load = await Load.CreateAsync(client, group.First(), context.Rank, cancellationToken).ConfigureAwait(false);
                foreach (var c in group)
                {
                    await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
                    context.Log.LogDebug("Rank {Rank}: {Op} {Size} window {Window}", context.Rank, BenchCase.Name(c.Op), ByteSizes.Format(c.SizeBytes), c.Window);
                    load.Run(c, recorder, plan, cancellationToken);
                    context.Output.WriteLine(WorkerLine(context.Rank, c, recorder, plan.Duration));
                    context.Output.Flush();
                }
            }
        }
        finally
        {
            client.Diagnostics.CallObserver = null;
        }
        return 0;
    }

    private static string WorkerLine(int rank, BenchCase c, Recorder recorder, double seconds)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteNumber("bench_worker", rank);
            w.WriteString("op", BenchCase.Name(c.Op));
            w.WriteNumber("size_bytes", c.SizeBytes);
            w.WriteNumber("keys_per_request", c.KeysPerRequest);
            w.WriteNumber("window", c.Window);
            w.WriteNumber("requests", recorder.Completed);
            w.WriteNumber("bytes", recorder.Completed * c.BytesPerRequest);
            w.WriteNumber("seconds", seconds);
            w.WriteStartArray("hist");
            foreach (var pair in recorder.Histogram.ToPairs())
            {
                w.WriteStartArray();
                w.WriteNumberValue(pair[0]);
                w.WriteNumberValue(pair[1]);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>One table per value size: each key is its own block, and this worker picks one block owned by each server.</summary>
    private sealed class Load
    {
        private const int Blocks = 4096;
        private readonly PsClient _client;
        private readonly PsTable _table;
        private readonly ulong[][] _keysBySlot;
        private readonly float[] _values;
        private readonly float[] _destination;

        private Load(PsClient client, PsTable table, ulong[][] keysBySlot, int valueCount)
        {
            _client = client;
            _table = table;
            _keysBySlot = keysBySlot;
            _values = new float[valueCount];
            Array.Fill(_values, 1f / 1024);
            _destination = new float[valueCount];
        }

        public static async Task<Load> CreateAsync(PsClient client, BenchCase c, int rank, CancellationToken cancellationToken)
        {
            int k = c.KeysPerRequest;
            var spec = new TableSpec(string.Create(CultureInfo.InvariantCulture, $"bench-{c.SizeBytes}-{k}"), c.Width) { DenseSize = (ulong)k * Blocks, BlockKeys = k };
            var table = await client.DeclareTableAsync(spec, cancellationToken).ConfigureAwait(false);
            var placement = client.Diagnostics.BlocksOf(table);
            var keys = new ulong[placement.ServerCount][];
            var owned = new int[placement.ServerCount];
            for (long block = 0; block < Blocks; block++)
            {
                int slot = placement.SlotOfBlock(block);
                if (owned[slot]++ == rank)
                {
                    keys[slot] = Enumerable.Range(0, k).Select(i => (ulong)(block * k) + (ulong)i).ToArray();
                }
            }
            if (keys.Any(k => k is null))
            {
                throw new PsException(PsErrorCode.InvalidArgument, $"too few blocks per server for worker rank {rank}: use fewer workers");
            }
            return new Load(client, table, keys!, c.SizeBytes / sizeof(float));
        }

        public void Run(BenchCase c, Recorder recorder, KvBenchPlan plan, CancellationToken cancellationToken)
        {
            _table.Consistency = Consistency.BoundedDelay(c.Window - 1);
            long start = Stopwatch.GetTimestamp();
            long from = start + (long)(plan.Warmup * Stopwatch.Frequency);
            long to = from + (long)(plan.Duration * Stopwatch.Frequency);
            recorder.Begin(from, to);
            int servers = _keysBySlot.Length;
            long request = 0;
            while (Stopwatch.GetTimestamp() < to && !recorder.Failed)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var keys = _keysBySlot[(int)(request++ % servers)];
                switch (c.Op)
                {
                    case BenchOp.Push:
                        _table.Push(keys, _values);
                        break;
                    case BenchOp.Pull:
                        _table.Pull(keys, _destination);
                        break;
                    default:
                        _table.PushPull(keys, _values, _destination);
                        break;
                }
            }
            _client.WaitAll();
            recorder.End();
        }
    }

    /// <summary>Issue times by timestamp; completions inside [from, to) are counted and their latency recorded.</summary>
    private sealed class Recorder : ICallObserver
    {
        private const int Ring = 4 * KvBenchPlan.MaxWindow; // more than can be in flight
        private readonly long[] _issued = new long[Ring];
        private readonly double _nanosPerTick = 1e9 / Stopwatch.Frequency;
        private long _from;
        private long _to;
        private long _completed;
        private int _active;
        private PsException? _error;

        public LatencyHistogram Histogram { get; } = new();

        public long Completed => Interlocked.Read(ref _completed);

        public bool Failed => Volatile.Read(ref _error) is not null;

        public void Begin(long from, long to)
        {
            Histogram.Clear();
            _completed = 0;
            _from = from;
            Volatile.Write(ref _to, to);
        }

        /// <summary>Waits for completions still being recorded, then throws the first failure.</summary>
        public void End()
        {
            while (Volatile.Read(ref _active) != 0)
            {
                Thread.SpinWait(20);
            }
            if (_error is { } error)
            {
                throw new PsException(error.Code, $"a benchmark call failed: {error.Message}", error);
            }
        }

        public void OnIssued(long timestamp) => _issued[timestamp & (Ring - 1)] = Stopwatch.GetTimestamp();

        public void OnCompleted(long timestamp, PsException? error)
        {
            Interlocked.Increment(ref _active);
            long now = Stopwatch.GetTimestamp();
            if (error is not null)
            {
                Interlocked.CompareExchange(ref _error, error, null);
            }
            else if (now >= _from && now < Volatile.Read(ref _to))
            {
                Interlocked.Increment(ref _completed);
                Histogram.Record((long)((now - _issued[timestamp & (Ring - 1)]) * _nanosPerTick));
            }
            Interlocked.Decrement(ref _active);
        }
    }
}
