using ParameterServer.Core.Cluster;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;
using ParameterServer.Server.Sync;

namespace ParameterServer.Tests;

public class TableStoreTests
{
    private static TableStore Store(TableSpec spec, IUpdateHandler? handler = null) =>
        new(TableInfo.From(1, spec), handler ?? UpdateHandlers.Sum);

    [Theory]
    [InlineData(0UL)]
    [InlineData(5000UL)]
    public void Sparse_and_dense_tables_sum_pushes_and_read_them_back(ulong denseSize)
    {
        var store = Store(new TableSpec("t", 3) { DenseSize = denseSize, BlockKeys = 100 });
        ulong[] keys = [1, 2, 99, 100, 101, 4999];
        float[] values = Enumerable.Range(0, keys.Length * 3).Select(i => (float)i).ToArray();
        store.Apply(KeyList.Of(keys), values);
        store.Apply(KeyList.Of(keys), values);
        var read = new float[values.Length];
        store.Read(KeyList.Of(keys), read);
        Assert.Equal(values.Select(v => 2 * v), read);
    }

    [Fact]
    public void Unknown_sparse_keys_read_as_zero_without_being_stored()
    {
        var store = Store(new TableSpec("t", 2));
        var read = new float[] { 7, 7, 7, 7 };
        store.Read(KeyList.Of([10, 20]), read);
        Assert.All(read, v => Assert.Equal(0f, v));
        Assert.Equal(0, store.Usage().Keys);
    }

    [Fact]
    public void Contiguous_runs_in_dense_blocks_match_key_by_key_application()
    {
        // Sum takes the vectorised run path; a wrapper that hides IRunUpdateHandler takes the per-key path.
        var fast = Store(new TableSpec("t", 2) { DenseSize = 1000, BlockKeys = 64 });
        var slow = Store(new TableSpec("t", 2) { DenseSize = 1000, BlockKeys = 64 }, new PerKeyOnly(UpdateHandlers.Sum));
        var random = new Random(1);
        for (int round = 0; round < 50; round++)
        {
            var keys = Enumerable.Range(0, 1000).Where(_ => random.Next(3) > 0).Select(k => (ulong)k).ToArray();
            var values = keys.SelectMany(_ => new[] { (float)random.NextDouble(), (float)random.NextDouble() }).ToArray();
            fast.Apply(KeyList.Range(0, 0), []);
            fast.Apply(KeyList.Of(keys), values);
            slow.Apply(KeyList.Of(keys), values);
        }
        var all = Enumerable.Range(0, 1000).Select(k => (ulong)k).ToArray();
        var a = new float[2000];
        var b = new float[2000];
        fast.Read(KeyList.Of(all), a);
        slow.Read(KeyList.Range(0, 1000), b);
        Assert.Equal(b, a);
    }

    [Fact]
    public void Dense_tables_hold_about_four_bytes_per_float()
    {
        var store = Store(new TableSpec("t", 1) { DenseSize = 1 << 20, BlockKeys = 4096 });
        var values = new float[1 << 20];
        store.Apply(KeyList.Range(0, 1 << 20), values);
        var (keys, bytes) = store.Usage();
        Assert.Equal(1 << 20, keys);
        Assert.InRange(bytes / (double)keys, 4.0, 4.1);
    }

    [Fact]
    public void Handler_state_lives_next_to_values_and_is_not_pulled()
    {
        var store = Store(new TableSpec("t", 2) { Handler = "adagrad:lr=1" }, UpdateHandlers.Parse("adagrad:lr=1"));
        Assert.Equal(4, store.RowStride);
        store.Apply(KeyList.Of([42]), [2f, -2f]);
        var read = new float[2];
        store.Read(KeyList.Of([42]), read);
        Assert.Equal(-1f, read[0], 3); // w -= 1 * 2 / sqrt(4)
        Assert.Equal(1f, read[1], 3);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(4096UL)]
    public void A_block_copied_to_another_store_carries_values_and_handler_state_and_replaces_what_was_there(ulong denseSize)
    {
        var spec = new TableSpec("t", 2) { DenseSize = denseSize, BlockKeys = 1024 };
        var source = Store(spec, UpdateHandlers.Parse("adagrad:lr=1"));
        var copy = Store(spec, UpdateHandlers.Parse("adagrad:lr=1"));
        ulong[] keys = [3, 700, 1000];
        long block = source.Info.BlockOf(keys[0]);
        var inBlock = keys.Where(k => source.Info.BlockOf(k) == block).ToArray();
        source.Apply(KeyList.Of(keys), [1f, 2f, 3f, 4f, 5f, 6f]);
        copy.Apply(KeyList.Of(inBlock), Enumerable.Repeat(9f, inBlock.Length * 2).ToArray()); // stale rows the copy must replace

        var blockKeys = new List<ulong>();
        var rows = new List<float>();
        source.SnapshotBlock(block, blockKeys, rows);
        Assert.Equal(blockKeys.Order(), blockKeys); // sorted, as frames need
        Assert.Equal(source.RowStride * blockKeys.Count, rows.Count); // whole rows: values and the accumulator
        copy.WriteBlockRows(block, KeyList.Of(blockKeys.ToArray()), rows.ToArray(), clearFirst: true);

        // The next update gives the same result on both: the AdaGrad state came along.
        source.Apply(KeyList.Of(inBlock), Enumerable.Repeat(0.5f, inBlock.Length * 2).ToArray());
        copy.Apply(KeyList.Of(inBlock), Enumerable.Repeat(0.5f, inBlock.Length * 2).ToArray());
        var a = new float[inBlock.Length * 2];
        var b = new float[inBlock.Length * 2];
        source.Read(KeyList.Of(inBlock), a);
        copy.Read(KeyList.Of(inBlock), b);
        Assert.Equal(a, b);
        long other = block == 0 ? 1 : 0;
        Assert.Throws<ArgumentException>(() => copy.WriteBlockRows(other, KeyList.Of([keys[0]]), new float[source.RowStride], clearFirst: false));
        Assert.Throws<ArgumentException>(() => copy.WriteBlockRows(source.Info.BlockCount, KeyList.Of([]), [], clearFirst: true)); // a bad block from a peer
    }

    [Fact]
    public void A_dropped_block_forgets_its_rows_and_others_keep_theirs()
    {
        var store = Store(new TableSpec("t") { DenseSize = 100, BlockKeys = 10 }, UpdateHandlers.Sum);
        store.Apply(KeyList.Of([3, 15]), [1f, 2f]);
        Assert.Equal([0L, 1L], store.StoredBlocks());
        store.DropBlock(0);
        Assert.Equal([1L], store.StoredBlocks());
        var read = new float[2];
        store.Read(KeyList.Of([3, 15]), read);
        Assert.Equal([0f, 2f], read);
    }

    [Fact]
    public void Sync_aggregator_applies_a_round_once_when_every_worker_pushed()
    {
        var store = Store(new TableSpec("t") { Mode = UpdateMode.Sync }, UpdateHandlers.Sgd(1));
        var aggregator = store.Aggregator!;
        FrameHeader Push(int sender, long round) => new() { Type = MessageType.Push, SenderId = sender, Round = round, RequestId = (ulong)(sender * 100 + round) };
        var both = new SyncAggregator.Participants([1, 2], JoinedServer: false);
        Assert.Null(aggregator.Add(null!, Push(1, 0), KeyList.Of([5]), [1f], both, out _));
        var read = new float[1];
        store.Read(KeyList.Of([5]), read);
        Assert.Equal(0f, read[0]); // not applied until worker 2 pushed round 0
        Assert.Null(aggregator.Add(null!, Push(1, 1), KeyList.Of([5]), [10f], both, out _));
        var done = Assert.Single(aggregator.Add(null!, Push(2, 0), KeyList.Of([5]), [2f], both, out _)!);
        Assert.Equal(2, done.Acks.Count); // both workers' pushes of round 0 are acknowledged together
        Assert.Equal([5ul], done.Keys[..done.Count]); // the aggregate, for replication after aggregation
        Assert.Equal([3f], done.Values[..done.Count]);
        done.Release();
        store.Read(KeyList.Of([5]), read);
        Assert.Equal(-3f, read[0]); // sgd applied the sum 1 + 2 once
        Assert.Equal(1, aggregator.MaxLead); // worker 1 pushed round 1 while round 0 was open
        Assert.Equal(1, aggregator.RoundsApplied);
        // Worker 2 leaves: round 1 completes with the one worker still alive.
        Assert.Single(aggregator.OnLiveWorkersChanged(new([1], false))!).Release();
        store.Read(KeyList.Of([5]), read);
        Assert.Equal(-13f, read[0]);
        // A push of a round applied already (refused elsewhere and sent again) is not held: the caller applies it alone.
        Assert.Null(aggregator.Add(null!, Push(2, 0), KeyList.Of([5]), [1f], both, out bool late));
        Assert.True(late);
    }

    [Fact]
    public void Sync_aggregator_refuses_the_open_pushes_that_hold_keys_it_handed_over()
    {
        var store = Store(new TableSpec("t") { Mode = UpdateMode.Sync }, UpdateHandlers.Sgd(1));
        var aggregator = store.Aggregator!;
        var both = new SyncAggregator.Participants([1, 2], JoinedServer: false);
        FrameHeader Push(int sender, long round) => new() { Type = MessageType.Push, SenderId = sender, Round = round, RequestId = (ulong)(sender * 100 + round) };
        Assert.Null(aggregator.Add(null!, Push(1, 0), KeyList.Of([5, 700]), [1f, 1f], both, out _));
        Assert.Null(aggregator.Add(null!, Push(2, 1), KeyList.Of([5]), [1f], both, out _));
        var refused = aggregator.TakeMoved(key => key < 100, both, out var completed);
        Assert.Null(completed);
        Assert.Equal(1, Assert.Single(refused).Request.SenderId); // key 700 moved: worker 1's push of round 0 goes back to it
        // Worker 1 sends its keys again to their owners: key 5 here, as its push of round 0, which then completes.
        Assert.Null(aggregator.Add(null!, Push(1, 0), KeyList.Of([5]), [1f], both, out _));
        var round0 = Assert.Single(aggregator.Add(null!, Push(2, 0), KeyList.Of([5]), [2f], both, out _)!);
        Assert.Equal([3f], round0.Values[..round0.Count]);
        round0.Release();
    }

    [Fact]
    public void A_joined_server_does_not_wait_for_rounds_a_worker_cut_before_it_was_there()
    {
        var store = Store(new TableSpec("t") { Mode = UpdateMode.Sync }, UpdateHandlers.Sgd(1));
        var aggregator = store.Aggregator!;
        FrameHeader Push(int sender, long round) => new() { Type = MessageType.Push, SenderId = sender, Round = round, RequestId = (ulong)(sender * 100 + round) };
        var joined = new SyncAggregator.Participants([1, 2], JoinedServer: true);
        // Worker 2 is behind: its round 7 is the first this server sees; worker 1 first pushed here at round 9.
        Assert.Null(aggregator.Add(null!, Push(2, 7), KeyList.Of([5]), [1f], joined, out _));
        var rounds = aggregator.Add(null!, Push(1, 9), KeyList.Of([5]), [1f], joined, out _);
        Assert.Single(rounds!).Release(); // round 7 completes: worker 1 cut it by a view without this server
        Assert.Single(aggregator.Add(null!, Push(2, 8), KeyList.Of([5]), [1f], joined, out _)!).Release(); // likewise round 8
        Assert.Single(aggregator.Add(null!, Push(2, 9), KeyList.Of([5]), [1f], joined, out _)!).Release(); // round 9: both pushed it here
        // An original server would wait for worker 1's round 7.
        var original = Store(new TableSpec("t") { Mode = UpdateMode.Sync }, UpdateHandlers.Sgd(1)).Aggregator!;
        Assert.Null(original.Add(null!, Push(2, 7), KeyList.Of([5]), [1f], new([1, 2], false), out _));
        Assert.Null(original.Add(null!, Push(1, 9), KeyList.Of([5]), [1f], new([1, 2], false), out _));
    }

    [Fact]
    public void A_joined_server_completes_a_round_once_the_missing_worker_says_it_cut_that_round_without_it()
    {
        // The deadlock this prevents: worker 1 sends round 2 to the joined server, worker 2 cut its round 2 before it
        // routed by the new view, so it never comes; worker 2 then waits at a barrier for worker 1, which waits for the ack.
        var store = Store(new TableSpec("t") { Mode = UpdateMode.Sync }, UpdateHandlers.Sgd(1));
        var aggregator = store.Aggregator!;
        FrameHeader Push(int sender, long round) => new() { Type = MessageType.Push, SenderId = sender, Round = round, RequestId = (ulong)(sender * 100 + round) };
        var joined = new SyncAggregator.Participants([1, 2], JoinedServer: true);
        Assert.Null(aggregator.Add(null!, Push(1, 2), KeyList.Of([5]), [1f], joined, out _));
        Assert.Null(aggregator.NoteRoundsFrom(2, 2, joined)); // rounds below 2 only: round 2 still waits for worker 2
        var done = Assert.Single(aggregator.NoteRoundsFrom(2, 3, joined)!);
        Assert.Equal(2, done.Round);
        Assert.Equal(1, Assert.Single(done.Acks).Request.SenderId);
        done.Release();
        var read = new float[1];
        store.Read(KeyList.Of([5]), read);
        Assert.Equal(-1f, read[0]);
        // Round 3 waits for worker 2 again: it said its rounds from 3 on come here.
        Assert.Null(aggregator.Add(null!, Push(1, 3), KeyList.Of([5]), [1f], joined, out _));
        Assert.Single(aggregator.Add(null!, Push(2, 3), KeyList.Of([5]), [1f], joined, out _)!).Release();
    }

    private sealed class PerKeyOnly(IUpdateHandler inner) : IUpdateHandler
    {
        public int StateLength(int width) => inner.StateLength(width);

        public void Apply(Span<float> row, ReadOnlySpan<float> pushed, int width) => inner.Apply(row, pushed, width);
    }
}
