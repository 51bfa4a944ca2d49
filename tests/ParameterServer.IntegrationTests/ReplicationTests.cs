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

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_large_push_is_streamed_to_its_copies_and_lands_once_on_each(int copies)
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1, replication: copies);
        await using (cluster)
        {
            await using var client = clients[0];
            const int width = 256 << 10; // one 1 MiB row: passed on while it arrives
            var wide = await client.DeclareTableAsync(new TableSpec("wide", width) { DenseSize = 8, BlockKeys = 1 });
            var narrow = await client.DeclareTableAsync(new TableSpec("narrow", 4));
            var values = Enumerable.Range(0, width).Select(i => (float)(i % 1000)).ToArray();
            ulong[] small = Enumerable.Range(0, 50).Select(k => (ulong)k).ToArray();
            var ones = Enumerable.Repeat(1f, small.Length * 4).ToArray();
            var calls = new List<long>();
            for (int round = 0; round < 5; round++)
            {
                for (ulong key = 0; key < 8; key++)
                {
                    calls.Add(wide.Push([key], values));
                    calls.Add(narrow.Push(small, ones)); // small forwards interleave with the streamed parts
                }
            }
            foreach (long call in calls)
            {
                wide.Wait(call);
            }
            var info = client.View.FindTable("wide")!;
            var row = new float[width];
            for (ulong key = 0; key < 8; key++)
            {
                int holders = 0;
                foreach (var server in cluster.Servers)
                {
                    server.TableStoreOf(info.Id)!.Read([key], row);
                    if (row[1] != 0)
                    {
                        holders++;
                        for (int i = 0; i < width; i += 997)
                        {
                            Assert.Equal(5 * values[i], row[i]);
                        }
                    }
                }
                Assert.Equal(copies, holders);
            }
            var narrowInfo = client.View.FindTable("narrow")!;
            var narrowRow = new float[4];
            foreach (var server in cluster.Servers)
            {
                server.TableStoreOf(narrowInfo.Id)!.Read([small[0]], narrowRow);
                Assert.True(narrowRow[0] is 0 or 40, $"server {server.Id} holds {narrowRow[0]}");
            }
            long streamed = cluster.Servers.Sum(s => System.Text.Json.JsonDocument.Parse(s.StatsJson()).RootElement.GetProperty("replicated_streamed").GetInt64());
            Assert.Equal(40L * (copies - 1), streamed); // every large push went by cut-through, to every other copy
        }
    }

    [Fact]
    public async Task A_replica_applies_a_streamed_forward_only_on_its_commit()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            await client.DeclareTableAsync(new TableSpec("s", 2));
            var info = client.View.FindTable("s")!;
            var server = cluster.Servers[0];
            using var primary = new RawPeer(server.Port, NodeRole.Server);

            // A Replicate frame of one key (worker 77's request 700, key 9, values 2.5) cut into parts.
            byte[] Replicate(ulong id, ulong key, long workerRequest)
            {
                var frame = new byte[FrameHeader.Size + 16];
                new FrameHeader
                {
                    Type = MessageType.Replicate, SenderId = 99, RequestId = id, Aux = 77, Round = workerRequest, ViewNumber = client.View.Number,
                    TableId = info.Id, KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32, PayloadLength = 16,
                }.Write(frame);
                MemoryMarshal.Write(frame.AsSpan(FrameHeader.Size), key);
                MemoryMarshal.Cast<byte, float>(frame.AsSpan(FrameHeader.Size + 8)).Fill(2.5f);
                return frame;
            }
            void Part(ulong id, int length, int offset, ReplicatePartKind kind, ReadOnlySpan<byte> bytes) => primary.WriteFrame(new FrameHeader
            {
                Type = MessageType.ReplicatePart, SenderId = 99, RequestId = id, Timestamp = length, Round = offset, Aux = (uint)kind,
                RowWidth = 1, ElementType = WireElementType.Float32,
            }, bytes);
            float Row(ulong key)
            {
                var row = new float[2];
                server.TableStoreOf(info.Id)!.Read([key], row);
                return row[0];
            }

            var committed = Replicate(1, 9, 700);
            Part(1, committed.Length, 0, ReplicatePartKind.Data, committed.AsSpan(0, 70));
            Part(1, committed.Length, 70, ReplicatePartKind.Data, committed.AsSpan(70));
            Assert.Equal(0f, Row(9)); // not before its commit
            Part(1, committed.Length, committed.Length, ReplicatePartKind.Commit, default);
            var answer = primary.ReadFrame(TimeSpan.FromSeconds(10))!.Value;
            Assert.Equal((ErrorCode.None, 1UL), (answer.Header.Error, answer.Header.RequestId));
            Assert.Equal(2.5f, Row(9));

            var aborted = Replicate(2, 10, 701);
            Part(2, aborted.Length, 0, ReplicatePartKind.Data, aborted);
            Part(2, aborted.Length, aborted.Length, ReplicatePartKind.Abort, default);
            Part(3, 200, 8, ReplicatePartKind.Data, new byte[8]); // no stream 3 began
            answer = primary.ReadFrame(TimeSpan.FromSeconds(10))!.Value; // the abort is not answered: this answers part 3
            Assert.Equal((ErrorCode.MalformedPayload, 3UL), (answer.Header.Error, answer.Header.RequestId));
            Assert.Contains("begins at byte 8", System.Text.Encoding.UTF8.GetString(answer.Payload));
            Assert.Equal(0f, Row(10));
        }
    }

    [Fact]
    public async Task Forwards_and_block_copies_from_a_server_declared_dead_are_refused()
    {
        // A server declared dead while frozen may send what it had queued once it runs again: a late forward or a
        // stale block copy must not change the survivors (its worker resends what it did not acknowledge).
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 3, workers: 1);
        await using (cluster)
        {
            await using var client = clients[0];
            await client.DeclareTableAsync(new TableSpec("d", 2));
            var info = client.View.FindTable("d")!;
            var victim = cluster.Servers[2];
            await victim.DisposeAsync(); // its connections drop: declared dead
            var live = cluster.Servers[0];
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (live.View?.IsDeclaredDead(victim.Id) != true)
            {
                Assert.True(DateTime.UtcNow < deadline, $"server {live.Id} never saw server {victim.Id} declared dead");
                await Task.Delay(20);
            }
            uint view = live.View!.Number;
            var payload = new byte[8 + 8];
            MemoryMarshal.Write(payload, 11UL);
            MemoryMarshal.Cast<byte, float>(payload.AsSpan(8)).Fill(4f);
            using var ghost = new RawPeer(live.Port, NodeRole.Server);
            ghost.WriteFrame(new FrameHeader
            {
                Type = MessageType.Replicate, SenderId = victim.Id, RequestId = 5, Aux = 77, Round = 900, ViewNumber = view, TableId = info.Id,
                KeyCount = 1, RowWidth = 2, ElementType = WireElementType.Float32,
            }, payload);
            var answer = ghost.ReadFrame(TimeSpan.FromSeconds(10))!.Value;
            Assert.Equal(ErrorCode.Conflict, answer.Header.Error);
            Assert.Contains("declared dead", System.Text.Encoding.UTF8.GetString(answer.Payload));

            var store = live.TableStoreOf(info.Id)!;
            long block = info.BlockOf(11);
            var copy = new byte[8 + (store.RowStride * 4)];
            MemoryMarshal.Write(copy, 11UL);
            MemoryMarshal.Cast<byte, float>(copy.AsSpan(8)).Fill(9f);
            ghost.WriteFrame(new FrameHeader
            {
                Type = MessageType.Refill, SenderId = victim.Id, Timestamp = 1, Round = block, ViewNumber = view - 1, TableId = info.Id,
                KeyCount = 1, RowWidth = store.RowStride, ElementType = WireElementType.Float32,
            }, copy); // not answered: a stats round trip after it shows it was handled
            ghost.WriteFrame(new FrameHeader { Type = MessageType.ServerStats, SenderId = victim.Id, RequestId = 6, RowWidth = 1, ElementType = WireElementType.Float32 }, default);
            Assert.Equal(6UL, ghost.ReadFrame(TimeSpan.FromSeconds(10))!.Value.Header.RequestId);
            var row = new float[2];
            store.Read([11UL], row);
            Assert.Equal([0f, 0f], row);
        }
    }
}
