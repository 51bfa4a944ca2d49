using ParameterServer.Client;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// Task dependencies and run-time consistency changes, made observable with a sync table: a worker's push
/// is acknowledged only when the other worker has pushed the same round.
/// </summary>
public sealed class DependencyTests : IAsyncLifetime
{
    private InProcessCluster _cluster = null!;
    private PsClient _a = null!;
    private PsClient _b = null!;
    private PsTable _tableA = null!;
    private PsTable _tableB = null!;

    public async Task InitializeAsync()
    {
        var (cluster, clients) = await InProcessCluster.StartAsync(servers: 2, workers: 2);
        (_cluster, _a, _b) = (cluster, clients[0], clients[1]);
        var spec = new TableSpec("sync") { Mode = UpdateMode.Sync };
        _tableA = await _a.DeclareTableAsync(spec);
        _tableB = await _b.DeclareTableAsync(spec);
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    [Fact]
    public async Task A_pull_after_a_push_waits_for_it_while_a_plain_pull_does_not()
    {
        ulong[] keys = [7, 1UL << 60];
        _tableA.Consistency = Consistency.Eventual;
        long push = _tableA.Push(keys, [1f, 1f]);
        var plain = new float[2];
        var dependent = new float[2];
        await _a.WaitAsync(_tableA.Pull(keys, plain)); // not held back: answers before the round is applied
        long pull = _tableA.Pull(keys, dependent, after: [push]);
        await Task.Delay(300);
        Assert.False(_a.WaitAsync(pull).IsCompleted, "the dependent pull ran before its push completed");
        Assert.Equal([0f, 0f], plain);

        _tableB.Push(keys, [2f, 2f]); // completes round 0: both pushes are acknowledged, the pull is released
        await _a.WaitAsync(pull).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([3f, 3f], dependent);
        Assert.True(_a.WaitAsync(push).IsCompletedSuccessfully);
    }

    [Fact]
    public async Task Raising_tau_at_run_time_releases_a_waiting_call()
    {
        ulong[] keys = [11];
        _tableA.Consistency = Consistency.Sequential;
        _tableA.Push(keys, [1f]); // round 0 stays open until B pushes
        var second = Task.Run(() => _tableA.Push(keys, [1f])); // must wait: tau = 0
        await Task.Delay(300);
        Assert.False(second.IsCompleted, "a sequential call started while the previous one was pending");
        _tableA.Consistency = Consistency.BoundedDelay(1);
        long t = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(t > 0);
        _tableB.Push(keys, [1f]);
        _tableB.Push(keys, [1f]);
        _a.WaitAll();
        var value = new float[1];
        await _tableB.PullAsync(keys, value);
        Assert.Equal(4f, value[0]);
    }
}
