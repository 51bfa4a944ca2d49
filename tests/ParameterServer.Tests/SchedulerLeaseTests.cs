using Microsoft.Extensions.Time.Testing;
using ParameterServer.Core.Cluster;

namespace ParameterServer.Tests;

/// <summary>Fencing: a server serves only while the scheduler's echoes of its heartbeats keep its lease running.</summary>
public class SchedulerLeaseTests
{
    private const int TimeoutMs = 800;

    [Fact]
    public void Before_the_first_echo_the_node_has_not_joined_and_needs_no_lease()
    {
        var lease = new SchedulerLease(new FakeTimeProvider());
        Assert.True(lease.IsHeld(out _));
    }

    [Fact]
    public void An_echo_holds_the_lease_for_three_quarters_of_the_timeout_from_when_its_heartbeat_was_sent()
    {
        var clock = new FakeTimeProvider();
        var lease = new SchedulerLease(clock);
        ulong beat = lease.NextHeartbeat();
        clock.Advance(TimeSpan.FromMilliseconds(300)); // the echo is slow: the lease counts from the send, not the echo
        lease.Renew(beat, TimeoutMs);
        clock.Advance(TimeSpan.FromMilliseconds(299));
        Assert.True(lease.IsHeld(out _));
        clock.Advance(TimeSpan.FromMilliseconds(2));
        Assert.False(lease.IsHeld(out long lapsed));
        Assert.Equal(1, lapsed);
        Assert.True(lease.FirstRefusal());
        Assert.False(lease.FirstRefusal()); // one log line per lapse
    }

    [Fact]
    public void A_late_echo_of_an_older_heartbeat_does_not_shorten_the_lease_and_unknown_ones_are_ignored()
    {
        var clock = new FakeTimeProvider();
        var lease = new SchedulerLease(clock);
        ulong first = lease.NextHeartbeat();
        clock.Advance(TimeSpan.FromMilliseconds(100));
        ulong second = lease.NextHeartbeat();
        lease.Renew(second, TimeoutMs);
        lease.Renew(first, TimeoutMs);
        lease.Renew(second + 5, TimeoutMs); // never sent
        clock.Advance(TimeSpan.FromMilliseconds(599));
        Assert.True(lease.IsHeld(out _));
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(lease.IsHeld(out _));
    }

    [Fact]
    public void A_scheduler_that_closes_while_the_lease_runs_died_and_its_restart_grace_extends_the_lease_but_not_an_ended_one()
    {
        var clock = new FakeTimeProvider();
        var lease = new SchedulerLease(clock);
        lease.Renew(lease.NextHeartbeat(), TimeoutMs);
        clock.Advance(TimeSpan.FromMilliseconds(100));
        lease.SchedulerClosed(SchedulerLease.RestartGrace);
        clock.Advance(SchedulerLease.RestartGrace - TimeSpan.FromMilliseconds(1));
        Assert.True(lease.IsHeld(out _));
        clock.Advance(TimeSpan.FromMilliseconds(2));
        Assert.False(lease.IsHeld(out _));

        // Resumed after a freeze: the close it reads now was the scheduler declaring it dead; the lease stays ended.
        lease.SchedulerClosed(SchedulerLease.RestartGrace);
        Assert.False(lease.IsHeld(out _));
    }
}
