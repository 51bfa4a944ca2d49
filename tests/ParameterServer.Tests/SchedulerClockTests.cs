using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

/// <summary>The scheduler measures node silence on its options' TimeProvider, so a test can move time instead of waiting.</summary>
public class SchedulerClockTests
{
    private static readonly TimeSpan HeartbeatTimeout = TimeSpan.FromMilliseconds(200);

    [Fact]
    public async Task A_silent_node_dies_when_the_schedulers_clock_passes_the_heartbeat_timeout_and_not_before()
    {
        var clock = new FakeTimeProvider();
        await using var scheduler = SchedulerNode.Start(new SchedulerOptions
        {
            Port = 0,
            Servers = 1,
            Workers = 1,
            HeartbeatInterval = TimeSpan.FromMilliseconds(50),
            HeartbeatTimeout = HeartbeatTimeout,
            StartupTimeout = TimeSpan.FromMinutes(5), // the job never starts here: only one of its two nodes registers
            TimeProvider = clock,
        });
        var closed = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        // A worker that registers over a real loopback connection and then never sends a heartbeat (no StartHeartbeats).
        using var channel = ControlChannel.Connect($"127.0.0.1:{scheduler.Port}", new TransportOptions(), null, (_, _) => { }, reason => closed.TrySetResult(reason));
        var w = new PayloadWriter();
        ControlMessages.WriteRegister(w, NodeRole.Worker, "127.0.0.1", 0, []);
        var reply = await channel.CallAsync(MessageType.Register, w.WrittenSpan.ToArray(), "the registration of the silent worker", TimeSpan.FromSeconds(10));
        int id = ControlMessages.ReadInts(reply.Payload, 3)[0];
        Assert.True(IsAlive(scheduler, id), $"node {id} is alive right after registering");

        // The fake clock stands still: however long the node is silent in real time, the scheduler sees no silence.
        var quiet = Stopwatch.StartNew();
        while (quiet.Elapsed < 5 * HeartbeatTimeout)
        {
            Assert.True(IsAlive(scheduler, id), $"node {id} still alive after {quiet.ElapsedMilliseconds} ms of real silence with the scheduler's clock stopped");
            await Task.Delay(20);
        }
        Assert.False(closed.Task.IsCompleted, "the scheduler kept the silent node's connection open while its clock stood still");

        // Past the timeout on the scheduler's clock: its monitor (which still runs every HeartbeatInterval/4 of real
        // time) declares the node dead at its next round.
        clock.Advance(HeartbeatTimeout + TimeSpan.FromMilliseconds(1));
        var deadline = Stopwatch.StartNew();
        while (IsAlive(scheduler, id))
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(5), $"waited {deadline.ElapsedMilliseconds} ms for the scheduler to declare node {id} dead after its clock passed the heartbeat timeout");
            await Task.Delay(10);
        }
        // The scheduler also closes the dead node's connection ("declared dead: no heartbeat").
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(t => Assert.True(t.IsCompletedSuccessfully,
            "waited 5 s for the scheduler to close the connection of the node it declared dead"));
    }

    private static bool IsAlive(SchedulerNode scheduler, int id) => scheduler.View.Nodes.Single(n => n.Id == id).Alive;
}
