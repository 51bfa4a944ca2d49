using System.Runtime.InteropServices;
using ParameterServer.Protocol;

namespace ParameterServer.IntegrationTests;

/// <summary>Chain replication between real server nodes (in-process, real TCP): copies, acknowledgement and dedup.</summary>
[Collection("processes")]
public class ReplicationTests
{
    [Fact]
    public async Task An_acknowledged_push_is_on_every_copy_of_its_chain()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            Assert.Equal(2, client.View.ChainLength); // the default with 3 servers
            var table = await client.DeclareTableAsync(new TableSpec("w", 4));
            ulong[] keys = Enumerable.Range(0, 300).Select(k => (ulong)k * 7).ToArray();
            var values = Enumerable.Range(0, keys.Length * 4).Select(i => (float)(i + 1)).ToArray();
            table.Wait(table.Push(keys, values));
            var info = client.View.FindTable("w")!;
            var row = new float[4];
            for (int k = 0; k < keys.Length; k++)
            {
                // Right after the acknowledgement, exactly two servers hold the row, with the pushed values.
                int copies = 0;
                foreach (var server in cluster.Servers)
                {
                    server.TableStoreOf(info.Id)!.Read([keys[k]], row);
                    if (row.Any(v => v != 0))
                    {
                        Assert.Equal(values.AsSpan(k * 4, 4).ToArray(), row);
                        copies++;
                    }
                }
                Assert.Equal(2, copies);
            }
        }
    }

    [Fact]
    public async Task A_resent_push_is_acknowledged_but_not_applied_again()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            var table = await client.DeclareTableAsync(new TableSpec("r", 2));
            var info = client.View.FindTable("r")!;
            var placement = client.View.PlacementOf(info);
            ulong key = Enumerable.Range(0, 1000).Select(k => (ulong)k).First(k => placement.SlotOf(k) == 0);
            var primary = cluster.Servers.Single(s => s.Id == client.View.Servers[0].Id);
            var replica = cluster.Servers.Single(s => s.Id != primary.Id);

            uint view = client.View.Number;

            byte[] Push(ulong requestId, FrameFlags flags, long round)
            {
                var payload = new byte[8 + 8];
                MemoryMarshal.Write(payload, key);
                MemoryMarshal.Cast<byte, float>(payload.AsSpan(8)).Fill(1.5f);
                var header = new FrameHeader
                {
                    Type = MessageType.Push, Flags = flags, SenderId = 77, RequestId = requestId, Round = round, Aux = view, TableId = info.Id,
                    KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32, PayloadLength = payload.Length,
                };
                var frame = new byte[FrameHeader.Size + payload.Length];
                header.Write(frame);
                payload.CopyTo(frame, FrameHeader.Size);
                return frame;
            }

            using (var peer = new RawPeer(primary.Port))
            {
                peer.Write(Push(500, FrameFlags.None, 0));
                Assert.Equal(ErrorCode.None, peer.ReadFrame(TimeSpan.FromSeconds(10))!.Value.Header.Error);
                peer.Write(Push(501, FrameFlags.Resend, 500)); // the same push again as frame 501, naming frame 500 (as after a failover)
                Assert.Equal(ErrorCode.None, peer.ReadFrame(TimeSpan.FromSeconds(10))!.Value.Header.Error);
            }
            using (var peer = new RawPeer(replica.Port))
            {
                // Under this view the replica is not the key's owner, so it refuses the resend; it holds the copy (checked
                // below) and its record of (77, 500), which is what makes it skip the resend once it is the primary.
                peer.Write(Push(502, FrameFlags.Resend, 500));
                var answer = peer.ReadFrame(TimeSpan.FromSeconds(10))!.Value;
                Assert.True(answer.Header.Error is ErrorCode.None or ErrorCode.WrongOwner, answer.Header.Error.ToString());
            }
            var row = new float[2];
            foreach (var server in cluster.Servers)
            {
                server.TableStoreOf(info.Id)!.Read([key], row);
                Assert.Equal([1.5f, 1.5f], row);
            }
        }
    }

    [Fact]
    public async Task With_three_copies_a_late_copy_of_a_resent_push_is_not_applied_again()
    {
        // Worker 77's frame 600 went to a primary that was lost; the worker resent it as frame 601. With three copies
        // the lost primary's own forward of frame 600 may reach a replica after the resend's forward did (they come on
        // different connections): the replica must not count it twice. Nor may a second resend (602) after that.
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1, replication: 3);
        await using (cluster)
        {
            await using var client = clients[0];
            Assert.Equal(3, client.View.ChainLength);
            await client.DeclareTableAsync(new TableSpec("r3", 2));
            var info = client.View.FindTable("r3")!;
            var placement = client.View.PlacementOf(info);
            const ulong key = 5;
            var primary = cluster.Servers.Single(s => s.Id == client.View.Servers[placement.SlotOf(key)].Id);
            uint view = client.View.Number;

            byte[] Payload()
            {
                var payload = new byte[8 + 8];
                MemoryMarshal.Write(payload, key);
                MemoryMarshal.Cast<byte, float>(payload.AsSpan(8)).Fill(1.5f);
                return payload;
            }
            void Expect(RawPeer peer)
            {
                var answer = peer.ReadFrame(TimeSpan.FromSeconds(10))!.Value;
                Assert.Equal(ErrorCode.None, answer.Header.Error);
            }

            using (var worker = new RawPeer(primary.Port))
            {
                worker.WriteFrame(new FrameHeader
                {
                    Type = MessageType.Push, Flags = FrameFlags.Resend, SenderId = 77, RequestId = 601, Round = 600, Aux = view, TableId = info.Id,
                    KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32,
                }, Payload());
                Expect(worker); // acknowledged once every copy applied it
            }
            foreach (var server in cluster.Servers)
            {
                // The lost primary's forward of frame 600 arrives late, at every copy.
                using var lostPrimary = new RawPeer(server.Port, NodeRole.Server);
                lostPrimary.WriteFrame(new FrameHeader
                {
                    Type = MessageType.Replicate, SenderId = 99, RequestId = 1, Aux = 77, Round = 600, ViewNumber = view, TableId = info.Id,
                    KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32,
                }, Payload());
                Expect(lostPrimary);
            }
            using (var worker = new RawPeer(primary.Port))
            {
                worker.WriteFrame(new FrameHeader
                {
                    Type = MessageType.Push, Flags = FrameFlags.Resend, SenderId = 77, RequestId = 602, Round = 600, Aux = view, TableId = info.Id,
                    KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32,
                }, Payload());
                Expect(worker);
            }
            var row = new float[2];
            foreach (var server in cluster.Servers)
            {
                server.TableStoreOf(info.Id)!.Read([key], row);
                Assert.Equal([1.5f, 1.5f], row);
            }
        }
    }
}
