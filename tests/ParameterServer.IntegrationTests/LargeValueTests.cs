using System.Runtime.InteropServices;
using ParameterServer.Client;
using ParameterServer.Extensions;
using ParameterServer.Protocol;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// Large frames take other paths than small ones: values sent from the caller's memory, answers sent from the store
/// (non-blocking under the block lock, the rest copied aside), answers received straight into the destination.
/// Every value must still arrive exactly, with several calls in flight and on tables with and without handler state.
/// </summary>
[Collection("processes")]
public class LargeValueTests
{
    [Theory]
    [InlineData("sum", 1, 1 << 18, 1)]        // one 1 MiB row per call
    [InlineData("sum", 64, 4096, 3)]          // 64 keys of 16 KiB: contiguous runs across blocks
    [InlineData("sgd:lr=1", 2, 1 << 20, 2)]   // 4 MiB rows, larger than a socket buffer
    [InlineData("adagrad:lr=0.5", 200, 512, 4)] // rows with state: the answer is many small runs, copied aside
    public async Task Large_pushes_and_pulls_arrive_exactly(string handler, int keyCount, int width, int inFlight)
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            var table = await client.DeclareTableAsync(new TableSpec("big", width) { DenseSize = 1 << 12, BlockKeys = 16, Handler = handler });
            table.Consistency = Consistency.BoundedDelay(inFlight - 1);
            ulong[] keys = Enumerable.Range(100, keyCount).Select(k => (ulong)k).ToArray();
            var pushed = new float[keyCount * width];
            for (int i = 0; i < pushed.Length; i++)
            {
                pushed[i] = (i % 1000) * 0.25f;
            }
            // Apply the same push on a local copy with the same handler to know what the servers hold.
            var expected = new float[keyCount * (width + UpdateHandlers.Parse(handler).StateLength(width))];
            var local = UpdateHandlers.Parse(handler);
            int stride = width + local.StateLength(width);
            const int rounds = 3;
            var pulls = Enumerable.Range(0, rounds).Select(_ => new float[pushed.Length]).ToArray();
            var stamps = new List<long>();
            for (int r = 0; r < rounds; r++)
            {
                stamps.Add(table.Push(keys, pushed));
                stamps.Add(table.PushPull(keys, pushed, pulls[r]));
                for (int k = 0; k < keyCount; k++)
                {
                    local.Apply(expected.AsSpan(k * stride, stride), pushed.AsSpan(k * width, width), width);
                    local.Apply(expected.AsSpan(k * stride, stride), pushed.AsSpan(k * width, width), width);
                }
            }
            var final = new float[pushed.Length];
            stamps.Add(table.Pull(keys, final));
            foreach (long t in stamps)
            {
                table.Wait(t);
            }
            for (int k = 0; k < keyCount; k++)
            {
                Assert.True(expected.AsSpan(k * stride, width).SequenceEqual(final.AsSpan(k * width, width)), $"key {keys[k]} differs after {rounds} rounds");
            }
            Assert.All(pulls, p => Assert.Contains(p, v => v != 0));
        }
    }

    [Fact]
    public async Task A_large_pull_of_keys_spread_over_servers_is_scattered_exactly()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            const int width = 256;
            var table = await client.DeclareTableAsync(new TableSpec("sparse", width));
            ulong[] keys = Enumerable.Range(0, 600).Select(k => (ulong)k * 7919).ToArray(); // hashed: interleaved servers
            var values = Enumerable.Range(0, keys.Length * width).Select(i => (float)i).ToArray();
            table.Wait(table.Push(keys, values));
            var pulled = new float[values.Length];
            table.Wait(table.Pull(keys, pulled));
            Assert.Equal(values, pulled);
        }
    }

    /// <summary>
    /// A large push to a sum table is applied piece by piece as it arrives; pieces that split a float, a key section
    /// that arrives alone and a frame that stops halfway must not change what a complete push adds.
    /// </summary>
    [Fact]
    public async Task A_large_push_arriving_in_odd_pieces_is_applied_exactly()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 1, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            const int width = 3 * 8192; // 96 KiB rows: applied in slices
            var table = await client.DeclareTableAsync(new TableSpec("pieces", width) { DenseSize = 16, BlockKeys = 4 });
            ulong[] keys = [5, 6];
            var values = Enumerable.Range(0, keys.Length * width).Select(i => (i % 977) * 0.5f).ToArray();
            var frame = PushFrame(client.View.FindTable("pieces")!.Id, requestId: 7, keys, values, width);

            using (var peer = new RawPeer(cluster.Servers[0].Port))
            {
                int[] pieces = [FrameHeader.Size + 9, 4093, 3, 1, 70001, 6, 12345];
                int sent = 0;
                for (int i = 0; sent < frame.Length; i++)
                {
                    int n = Math.Min(pieces[i % pieces.Length], frame.Length - sent);
                    peer.Write(frame.AsSpan(sent, n));
                    sent += n;
                    Thread.Sleep(1); // let each piece arrive on its own
                }
                var ack = peer.ReadFrame(TimeSpan.FromSeconds(10)) ?? throw new Xunit.Sdk.XunitException("the server closed the connection instead of acknowledging");
                Assert.Equal(ErrorCode.None, ack.Header.Error);
                Assert.Equal(7UL, ack.Header.RequestId);
            }
            using (var broken = new RawPeer(cluster.Servers[0].Port))
            {
                broken.Write(frame.AsSpan(0, FrameHeader.Size + 16)); // the keys, then the peer goes away
            }

            var pulled = new float[values.Length];
            table.Wait(table.Push(keys, values));
            table.Wait(table.Pull(keys, pulled));
            Assert.Equal(values.Select(v => v * 2), pulled);
        }
    }

    /// <summary>A large push applied piece by piece still keeps NaN out of the table: it stops at the first one and says so.</summary>
    [Fact]
    public async Task A_large_push_applied_as_it_arrives_stops_at_a_NaN_and_says_so()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 1, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            const int width = 3 * 8192; // 96 KiB rows: applied in slices
            var table = await client.DeclareTableAsync(new TableSpec("nan", width) { DenseSize = 16, BlockKeys = 4 });
            ulong[] keys = [5, 6];
            var values = Enumerable.Repeat(1f, keys.Length * width).ToArray();
            int bad = width + 100; // in the second row
            values[bad] = float.NaN;
            var frame = PushFrame(client.View.FindTable("nan")!.Id, requestId: 8, keys, values, width);
            using (var peer = new RawPeer(cluster.Servers[0].Port))
            {
                peer.Write(frame.AsSpan(0, 8192)); // the keys and the first values arrive before the rest: chunked
                Thread.Sleep(20);
                peer.Write(frame.AsSpan(8192));
                var answer = peer.ReadFrame(TimeSpan.FromSeconds(10)) ?? throw new Xunit.Sdk.XunitException("the server closed the connection instead of answering");
                Assert.Equal(ErrorCode.InvalidArgument, answer.Header.Error);
                Assert.Contains($"NaN at value {bad}: refused from there on", System.Text.Encoding.UTF8.GetString(answer.Payload));
            }
            var pulled = new float[values.Length];
            table.Wait(table.Pull(keys, pulled));
            Assert.All(pulled, v => Assert.True(float.IsFinite(v)));
            Assert.Equal(bad, pulled.Count(v => v == 1f)); // applied up to the NaN, nothing after it
        }
    }

    /// <summary>A push frame as a worker (node 99) would send it, to be written in pieces of the test's choosing.</summary>
    private static byte[] PushFrame(int tableId, ulong requestId, ulong[] keys, float[] values, int width)
    {
        var frame = new byte[FrameHeader.Size + (keys.Length * 8) + (values.Length * 4)];
        new FrameHeader
        {
            Type = MessageType.Push, SenderId = 99, RequestId = requestId, TableId = tableId,
            KeyCount = keys.Length, RowWidth = width, ElementType = WireElementType.Float32, PayloadLength = frame.Length - FrameHeader.Size,
        }.Write(frame);
        MemoryMarshal.AsBytes(keys.AsSpan()).CopyTo(frame.AsSpan(FrameHeader.Size));
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(frame.AsSpan(FrameHeader.Size + (keys.Length * 8)));
        return frame;
    }
}
