using System.Runtime.InteropServices;
using System.Text;
using ParameterServer.Client;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.IntegrationTests;

/// <summary>Malformed requests against real nodes (in-process, real TCP): a clear error, and the node keeps serving.</summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private InProcessCluster _cluster = null!;
    private PsClient _client = null!;
    private PsTable _table = null!;

    public async Task InitializeAsync()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 1);
        _cluster = cluster;
        _client = clients[0];
        _table = await _client.DeclareTableAsync(new TableSpec("weights", 4));
    }

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    private int ServerPort => _cluster.Servers[0].Port;

    /// <summary>A key that server 0 owns, found through the client's own routing.</summary>
    private ulong KeyOwnedBy(int slot)
    {
        var placement = _client.View.PlacementOf(_client.View.FindTable("weights")!);
        for (ulong k = 0; ; k++)
        {
            if (placement.SlotOf(k) == slot)
            {
                return k;
            }
        }
    }

    private static FrameHeader PushHeader(int table, int keys, int width) => new()
    {
        Type = MessageType.Push,
        SenderId = 99,
        RequestId = 1,
        TableId = table,
        KeyCount = keys,
        RowWidth = width,
        ElementType = WireElementType.Float32,
    };

    private static byte[] Payload(ulong[] keys, int width)
    {
        var bytes = new byte[keys.Length * 8 + keys.Length * width * 4];
        MemoryMarshal.Cast<ulong, byte>(keys).CopyTo(bytes);
        return bytes;
    }

    private (ErrorCode Code, string Message) Send(FrameHeader header, byte[] payload)
    {
        using var peer = new RawPeer(ServerPort);
        peer.WriteFrame(header, payload);
        var reply = peer.ReadFrame(TimeSpan.FromSeconds(10)) ?? throw new Xunit.Sdk.XunitException("the server closed the connection instead of answering");
        Assert.Equal(MessageType.Response, reply.Header.Type);
        return (reply.Header.Error, Encoding.UTF8.GetString(reply.Payload));
    }

    private async Task AssertStillServes()
    {
        ulong[] keys = [1, 2, 3];
        await _table.PushAsync(keys, new float[12]);
        var values = new float[12];
        await _table.PullAsync(keys, values);
    }

    [Fact]
    public async Task Unknown_table_is_named_in_the_error()
    {
        ulong key = KeyOwnedBy(0);
        var (code, message) = Send(PushHeader(table: 42, keys: 1, width: 4), Payload([key], 4));
        Assert.Equal(ErrorCode.UnknownTable, code);
        Assert.Contains("no table 42", message);
        await AssertStillServes();
    }

    [Fact]
    public async Task Wrong_value_width_is_refused_by_the_server_and_the_client()
    {
        ulong key = KeyOwnedBy(0);
        var (code, message) = Send(PushHeader(table: 1, keys: 1, width: 2), Payload([key], 2));
        Assert.Equal(ErrorCode.WrongWidth, code);
        Assert.Contains("width 4, the request has width 2", message);
        var ex = Assert.Throws<ArgumentException>(() => _table.Push([key], new float[2]));
        Assert.Contains("need 4 values, got 2", ex.Message);
        await AssertStillServes();
    }

    [Fact]
    public async Task Non_finite_values_are_refused_by_the_server_and_the_client_and_the_table_is_unchanged()
    {
        ulong key = KeyOwnedBy(0);
        var payload = Payload([key], 4);
        MemoryMarshal.Cast<byte, float>(payload.AsSpan(8))[1] = float.NaN;
        var (code, message) = Send(PushHeader(table: 1, keys: 1, width: 4), payload);
        Assert.Equal(ErrorCode.InvalidArgument, code);
        Assert.Contains("NaN at value 1", message);
        // The client refuses before sending: no server applies any part of such a push.
        ulong other = KeyOwnedBy(1);
        ulong first = Math.Min(key, other), second = Math.Max(key, other);
        var ex = Assert.Throws<PsException>(() => _table.Push([first, second], [1f, 1f, 1f, 1f, 2f, 2f, float.PositiveInfinity, 2f]));
        Assert.Contains($"key {second}, column 2", ex.Message);
        Assert.Contains("the table is unchanged", ex.Message);
        var values = new float[8];
        await _table.PullAsync([first, second], values);
        Assert.All(values, v => Assert.Equal(0f, v));
        await AssertStillServes();
    }

    [Fact]
    public async Task Unsorted_or_duplicate_keys_are_refused_by_the_server_and_the_client()
    {
        ulong key = KeyOwnedBy(0);
        var (code, message) = Send(PushHeader(table: 1, keys: 2, width: 4), Payload([key, key], 4));
        Assert.Equal(ErrorCode.KeysNotSorted, code);
        Assert.Contains("sorted ascending without duplicates", message);
        Assert.Throws<ArgumentException>(() => _table.Push([5, 3], new float[8]));
        Assert.Throws<ArgumentException>(() => _table.Pull([5, 5], new float[8]));
        await AssertStillServes();
    }

    [Fact]
    public async Task A_key_sent_to_the_wrong_server_is_refused_with_its_owner()
    {
        ulong key = KeyOwnedBy(1);
        var (code, message) = Send(PushHeader(table: 1, keys: 1, width: 4), Payload([key], 4));
        Assert.Equal(ErrorCode.WrongOwner, code);
        Assert.Contains($"key {key}", message);
        await AssertStillServes();
    }

    [Fact]
    public async Task A_payload_that_does_not_match_its_counts_is_refused()
    {
        var (code, message) = Send(PushHeader(table: 1, keys: 3, width: 4), new byte[10]);
        Assert.Equal(ErrorCode.MalformedPayload, code);
        Assert.Contains("need", message);
        await AssertStillServes();
    }

    [Fact]
    public async Task A_frame_longer_than_the_limit_closes_only_that_connection()
    {
        using var peer = new RawPeer(ServerPort);
        var header = new byte[FrameHeader.Size];
        new FrameHeader { Type = MessageType.Push, PayloadLength = int.MaxValue - 100 }.Write(header);
        peer.Write(header);
        Assert.Null(peer.ReadFrame(TimeSpan.FromSeconds(10)));
        await AssertStillServes();
    }

    [Fact]
    public async Task A_member_may_send_only_what_its_proven_role_may_and_is_told_why()
    {
        Assert.NotNull(JobSecret.FromEnvironment()); // roles are proven only with a secret (JobSecretSetup)
        (ErrorCode Code, string Message) Ask(int port, NodeRole role, MessageType type, byte[]? payload = null)
        {
            using var peer = new RawPeer(port, role);
            peer.WriteFrame(new FrameHeader { Type = type, RequestId = 5, RowWidth = 1, ElementType = WireElementType.Float32 }, payload ?? []);
            var reply = peer.ReadFrame(TimeSpan.FromSeconds(10)) ?? throw new Xunit.Sdk.XunitException($"the node closed the connection instead of answering {type}");
            return (reply.Header.Error, Encoding.UTF8.GetString(reply.Payload));
        }

        // A worker cannot act as a server: no replicate, no refill.
        foreach (var type in new[] { MessageType.Replicate, MessageType.Refill })
        {
            var (code, message) = Ask(ServerPort, NodeRole.Worker, type);
            Assert.Equal(ErrorCode.Forbidden, code);
            Assert.Contains($"refuses {type} frames", message, StringComparison.Ordinal);
            Assert.Contains("proved the role worker", message, StringComparison.Ordinal);
        }
        // A tool reads, and nothing more.
        Assert.Equal(ErrorCode.None, Ask(ServerPort, NodeRole.Observer, MessageType.ServerStats).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(ServerPort, NodeRole.Observer, MessageType.Push).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(_cluster.Scheduler.Port, NodeRole.Observer, MessageType.Barrier).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(_cluster.Scheduler.Port, NodeRole.Observer, MessageType.DeclareTable).Code);
        Assert.Equal(ErrorCode.None, Ask(_cluster.Scheduler.Port, NodeRole.Observer, MessageType.Status).Code);
        // The read-only token: statistics and status, no parameters and no operations.
        Assert.Equal(ErrorCode.None, Ask(ServerPort, NodeRole.Reader, MessageType.ServerStats).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(ServerPort, NodeRole.Reader, MessageType.Scan).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(ServerPort, NodeRole.Reader, MessageType.Pull).Code);
        Assert.Equal(ErrorCode.None, Ask(_cluster.Scheduler.Port, NodeRole.Reader, MessageType.Status).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(_cluster.Scheduler.Port, NodeRole.Reader, MessageType.Drain).Code);
        Assert.Equal(ErrorCode.Forbidden, Ask(_cluster.Scheduler.Port, NodeRole.Reader, MessageType.Rebalance).Code);
        await AssertStillServes();
    }

    [Fact]
    public async Task Garbage_bytes_close_only_that_connection()
    {
        using var peer = new RawPeer(ServerPort);
        peer.Write(Encoding.ASCII.GetBytes(new string('x', 200)));
        Assert.Null(peer.ReadFrame(TimeSpan.FromSeconds(10)));
        using var scheduler = new RawPeer(_cluster.Scheduler.Port);
        scheduler.Write(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n\r\n" + new string(' ', 64)));
        Assert.Null(scheduler.ReadFrame(TimeSpan.FromSeconds(10)));
        await AssertStillServes();
    }

    [Fact]
    public async Task Declaring_a_table_again_with_another_definition_is_a_conflict()
    {
        var ex = await Assert.ThrowsAsync<PsException>(() => _client.DeclareTableAsync(new TableSpec("weights", 8)));
        Assert.Equal(PsErrorCode.Conflict, ex.Code);
        Assert.Same(_table, await _client.DeclareTableAsync(new TableSpec("weights", 4)));
    }

    [Fact]
    public async Task An_unknown_update_handler_lists_the_known_ones()
    {
        var ex = await Assert.ThrowsAsync<PsException>(() => _client.DeclareTableAsync(new TableSpec("x") { Handler = "ftrll" }));
        Assert.Equal(PsErrorCode.InvalidArgument, ex.Code);
        Assert.Contains("they know: sum, sgd, adagrad, momentum, ftrl, prox, adam", ex.Message);
        var bad = await Assert.ThrowsAsync<ArgumentException>(() => _client.DeclareTableAsync(new TableSpec("y") { Handler = "ftrl:alpha=-1" }));
        Assert.Contains("alpha", bad.Message);
    }

    [Fact]
    public async Task Dense_keys_outside_the_table_are_refused()
    {
        var dense = await _client.DeclareTableAsync(new TableSpec("dense", 1) { DenseSize = 100 });
        Assert.Throws<ArgumentOutOfRangeException>(() => dense.Push([99, 100], new float[2]));
        await dense.PushAsync([0, 99], [1f, 2f]);
    }
}
