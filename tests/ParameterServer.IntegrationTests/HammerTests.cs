using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Transport.Streams;
using Xunit.Abstractions;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// A job of real processes hammered on every port (the scheduler's and each server's) while it counts: peers with
/// the wrong secret, garbage senders, peers without a secret sending frames, half-open connections, slow senders of
/// a hello. The counters must come out exact and every node's memory bounded. 15 s in CI; PS_HAMMER_SECONDS=60 for
/// the minute.
/// </summary>
[Collection("processes")]
public sealed class HammerTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(180);

    /// <summary>Resident memory a node may reach while hammered (seen: 96-108 MB for the scheduler and servers).</summary>
    private const long MaxRssBytes = 600L << 20;

    private static int Seconds => int.TryParse(Environment.GetEnvironmentVariable("PS_HAMMER_SECONDS"), out int s) ? s : 15;

    [Fact]
    public async Task A_job_hammered_on_every_port_counts_exactly_in_bounded_memory()
    {
        int seconds = Seconds;
        int rounds = seconds * 1000 / 25; // a round every 25 ms or so: the job outlasts the hammering
        using var job = await ProcessCluster.StartAsync(2, 2, 2, "--app", "counter", "--json", "--keys", "500", "--rounds", rounds.ToString(CultureInfo.InvariantCulture), "--pause-ms", "20");
        var ports = new List<int> { int.Parse(job.Address[(job.Address.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture) };
        foreach (var server in job.Servers)
        {
            string line = await server.WaitForLineAsync(l => l.Contains(" listening on ", StringComparison.Ordinal), Limit, stderr: true);
            ports.Add(int.Parse(line[(line.LastIndexOf(':') + 1)..].Trim(), CultureInfo.InvariantCulture));
        }
        await job.WaitUntilPushingAsync();

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var counts = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var nodes = new[] { job.Scheduler }.Concat(job.Servers).Concat(job.Workers).ToList();
        var peaks = new long[nodes.Count];
        var attacks = new List<Task>();
        foreach (int port in ports)
        {
            attacks.Add(Loop("wrong secret", port, stop.Token, counts, WrongSecret));
            attacks.Add(Loop("garbage", port, stop.Token, counts, Garbage));
            attacks.Add(Loop("frames without a secret", port, stop.Token, counts, FramesWithoutSecret));
            attacks.Add(HalfOpenAsync(port, stop.Token, counts));
            for (int i = 0; i < 4; i++)
            {
                attacks.Add(Loop("slow hello", port, stop.Token, counts, SlowHello));
            }
        }
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                for (int i = 0; i < nodes.Count; i++)
                {
                    peaks[i] = Math.Max(peaks[i], ResidentBytes(nodes[i].Process));
                }
                await Task.Delay(200);
            }
        });
        // A member connecting during the flood still gets in: a status tool (a new process, new connections) every 3 s,
        // over the first half of the flood (the job, and its scheduler, may end soon after the flood).
        var toolsUntil = Stopwatch.StartNew();
        var tools = Task.Run(async () =>
        {
            var failures = new List<string>();
            int served = 0;
            while (toolsUntil.Elapsed < TimeSpan.FromSeconds(seconds / 2.0))
            {
                using var status = await Pserver.RunAsync(Limit, "status", "--scheduler", job.Address, "--json");
                if (status.ExitCode == 0)
                {
                    served++;
                }
                else
                {
                    failures.Add(status.Describe());
                }
                await Task.Delay(3000);
            }
            return (served, failures);
        });
        await Task.WhenAll(attacks);
        await sampler;
        var (served, failures) = await tools;

        output.WriteLine($"{seconds} s on {ports.Count} ports: " + string.Join(", ", counts.OrderBy(c => c.Key).Select(c => $"{c.Key} {c.Value:N0}")));
        string[] names = ["scheduler", .. job.Servers.Select((_, i) => $"server {i}"), .. job.Workers.Select((_, i) => $"worker {i}")];
        output.WriteLine("peak RSS: " + string.Join(", ", names.Select((n, i) => $"{n} {peaks[i] / (1 << 20)} MB")));
        output.WriteLine($"status tools during the flood: {served} served, {failures.Count} failed");
        Assert.True(failures.Count == 0, "a member could not connect during the flood:\n" + string.Join("\n", failures));
        Assert.True(served >= 1, "no status tool ran during the flood");
        Assert.All(counts.Keys, k => Assert.True(counts[k] > 0, $"no {k} attempt was made"));
        await CounterChecks.AssertExactAsync(job, Stopwatch.StartNew(), null, output);
        Assert.All(peaks, p => Assert.InRange(p, 1, MaxRssBytes));
        Assert.Contains("Refused a connection", job.Scheduler.Stderr, StringComparison.Ordinal);
    }

    private static async Task Loop(string name, int port, CancellationToken stop, System.Collections.Concurrent.ConcurrentDictionary<string, int> counts, Func<int, CancellationToken, Task> attack)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await attack(port, stop);
            }
            catch (Exception ex) when (ex is IOException or SocketException or TransportException or OperationCanceledException or ObjectDisposedException)
            {
                counts.AddOrUpdate($"{name} ({ex.GetType().Name})", 1, (_, n) => n + 1);
            }
            counts.AddOrUpdate(name, 1, (_, n) => n + 1);
        }
    }

    private static readonly byte[] WrongKey = "not-this-jobs-secret-0123456789abcdef"u8.ToArray();

    /// <summary>
    /// Attackers connect from 127.0.0.2, as from another host: tens of thousands of connections from the tools'
    /// own 127.0.0.1 would use up its ephemeral ports (TIME_WAIT) and refuse the members' connects on this machine.
    /// </summary>
    private static readonly IPAddress AttackerAddress = IPAddress.Parse("127.0.0.2");

    private static TcpClient Attacker() => new(new IPEndPoint(AttackerAddress, 0)) { NoDelay = true };

    private static Task WrongSecret(int port, CancellationToken stop) => Task.Run(() =>
    {
        var client = Attacker();
        client.Connect(IPAddress.Loopback, port);
        using var stream = new SocketStream(client.Client);
        Handshake.Connect(stream, WrongKey, NodeRole.Worker, TimeSpan.FromSeconds(2), "the node"); // throws: refused
    }, stop);

    private static async Task Garbage(int port, CancellationToken stop)
    {
        using var client = Attacker();
        await client.ConnectAsync(IPAddress.Loopback, port, stop);
        var bytes = new byte[Random.Shared.Next(1, 4096)];
        Random.Shared.NextBytes(bytes);
        await client.GetStream().WriteAsync(bytes, stop);
        await Task.Delay(5, stop);
    }

    private static async Task FramesWithoutSecret(int port, CancellationToken stop)
    {
        using var client = Attacker();
        await client.ConnectAsync(IPAddress.Loopback, port, stop);
        var frame = new byte[FrameHeader.Size + 16];
        new FrameHeader { Type = MessageType.Push, PayloadLength = 16, KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32 }.Write(frame);
        await client.GetStream().WriteAsync(frame, stop);
        _ = await client.GetStream().ReadAsync(new byte[64], stop); // closed by the node
    }

    /// <summary>Slow loris: a hello a byte at a time, slower than the handshake deadline allows.</summary>
    private static async Task SlowHello(int port, CancellationToken stop)
    {
        using var client = Attacker();
        await client.ConnectAsync(IPAddress.Loopback, port, stop);
        byte[] hello = [.. "PSAUTH01"u8, (byte)NodeRole.Worker, .. new byte[32]];
        foreach (byte b in hello)
        {
            await client.GetStream().WriteAsync(new[] { b }, stop);
            await Task.Delay(400, stop);
        }
    }

    /// <summary>Half-open: 20 connections that never say anything, each replaced when the node drops it.</summary>
    private static async Task HalfOpenAsync(int port, CancellationToken stop, System.Collections.Concurrent.ConcurrentDictionary<string, int> counts)
    {
        var open = new List<TcpClient>();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                open.RemoveAll(c =>
                {
                    bool dropped = c.Client.Poll(0, SelectMode.SelectRead) && c.Client.Available == 0;
                    if (dropped)
                    {
                        c.Dispose();
                    }
                    return dropped;
                });
                while (open.Count < 20)
                {
                    var client = Attacker();
                    await client.ConnectAsync(IPAddress.Loopback, port, stop);
                    open.Add(client);
                    counts.AddOrUpdate("half-open", 1, (_, n) => n + 1);
                }
                await Task.Delay(100, stop);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException)
        {
        }
        finally
        {
            open.ForEach(c => c.Dispose());
        }
    }

    private static long ResidentBytes(Process process)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{process.Id}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }
}
