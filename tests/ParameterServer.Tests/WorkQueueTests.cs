using ParameterServer.Scheduler.JobControl;
using ParameterServer.Scheduler;

namespace ParameterServer.Tests;

public class WorkQueueTests
{
    [Fact]
    public void Units_are_handed_out_once_and_the_queue_is_done_when_all_are_completed()
    {
        var queue = new WorkQueue(3, WorkerFailurePolicy.Reassign, TimeSpan.Zero);
        Assert.Equal(0, queue.ClaimFor(1, 0).Unit);
        Assert.Equal(1, queue.ClaimFor(2, 0).Unit);
        Assert.Equal(2, queue.ClaimFor(1, 0).Unit);
        Assert.Equal(Claim.AskAgain, queue.ClaimFor(3, 0).Unit); // all in progress: they may still come back
        Assert.True(queue.Complete(0, 9));
        Assert.True(queue.Complete(1, 9));
        Assert.True(queue.Complete(2, 9));
        Assert.False(queue.Complete(2, 9)); // a second report of the same unit is not a first completion...
        Assert.Equal(Claim.Done, queue.ClaimFor(3, 0).Unit);
        Assert.Equal(3, queue.Completions); // ...nor a second application when the same worker repeats it (a retry)
        Assert.Throws<ArgumentOutOfRangeException>(() => queue.Complete(3, 9));
    }

    [Theory]
    [InlineData(WorkerFailurePolicy.Reassign)]
    [InlineData(WorkerFailurePolicy.Drop)]
    public void A_dead_workers_unfinished_units_follow_the_policy(WorkerFailurePolicy policy)
    {
        var queue = new WorkQueue(3, policy, TimeSpan.Zero);
        queue.ClaimFor(1, 0);
        queue.ClaimFor(2, 0);
        queue.ClaimFor(2, 0);
        queue.Complete(1, 9);
        Assert.Equal([2], queue.OnWorkerDied(2)); // unit 1 was finished: it stays done
        if (policy == WorkerFailurePolicy.Reassign)
        {
            Assert.Equal(2, queue.ClaimFor(1, 0).Unit);
            Assert.Equal(1, queue.Reassigned);
            Assert.False(queue.IsDone);
        }
        else
        {
            Assert.Equal(1, queue.Dropped);
            queue.Complete(0, 9);
            Assert.True(queue.IsDone);
            Assert.Equal(Claim.Done, queue.ClaimFor(1, 0).Unit);
        }
    }

    [Fact]
    public void A_slow_unit_is_backed_up_once_by_an_idle_worker_and_the_first_result_wins()
    {
        var queue = new WorkQueue(1, WorkerFailurePolicy.Reassign, TimeSpan.FromSeconds(1));
        Assert.Equal(0, queue.ClaimFor(1, now: 0).Unit);
        Assert.Equal(Claim.AskAgain, queue.ClaimFor(2, now: 500).Unit); // not slow yet
        var backup = queue.ClaimFor(2, now: 1500);
        Assert.Equal((0, true), (backup.Unit, backup.Backup));
        Assert.Equal(Claim.AskAgain, queue.ClaimFor(3, now: 1600).Unit); // one backup per unit
        Assert.True(queue.Complete(0, 1));
        Assert.False(queue.Complete(0, 2));
        Assert.Equal(1, queue.Backups);
        Assert.Equal(2, queue.Completions); // both workers pushed the unit
    }

    [Fact]
    public void A_huge_declaration_costs_nothing_up_front_and_a_restored_queue_hands_out_each_unit_once()
    {
        // A declaration of int.MaxValue units (a mutated frame from the fuzzer once took the scheduler's loop for over
        // a minute listing them) is taken at once.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var huge = new WorkQueue(int.MaxValue, WorkerFailurePolicy.Reassign, TimeSpan.Zero);
        Assert.Equal(0, huge.ClaimFor(worker: 1, now: 0).Unit);
        Assert.Equal(1, huge.ClaimFor(worker: 1, now: 0).Unit);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"took {watch.Elapsed}");

        // Restored after a scheduler restart: 0 and 2 done, 1 and 3 claimed by worker 7, which rejoins holding only 1.
        var saved = new WorkQueue(5, WorkerFailurePolicy.Reassign, TimeSpan.Zero);
        for (int i = 0; i < 4; i++)
        {
            saved.ClaimFor(worker: 7, now: 0);
        }
        saved.Complete(0, worker: 7);
        saved.Complete(2, worker: 7);
        var queue = WorkQueue.Import(saved.Export(), WorkerFailurePolicy.Reassign, TimeSpan.Zero, now: 0);
        queue.OnWorkerRejoined(7, [1]);
        var handed = new List<int>();
        for (var claim = queue.ClaimFor(worker: 8, now: 0); claim.Unit >= 0; claim = queue.ClaimFor(worker: 8, now: 0))
        {
            handed.Add(claim.Unit);
        }
        Assert.Equal([3, 4], handed.Order().ToArray()); // 3 given back, 4 never handed out; each once
    }
}
