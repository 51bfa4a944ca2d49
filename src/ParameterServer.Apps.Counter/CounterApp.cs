using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Client;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Counter;

/// <summary>Options of the counter self-check.</summary>
public sealed record CounterOptions
{
    /// <summary>Keys pushed each round, spread evenly over the whole uint64 key space.</summary>
    public int Keys { get; init; } = 1000;

    public int Rounds { get; init; } = 100;

    /// <summary>When above 0: this many rounds in all, claimed one at a time from the scheduler's work queue (so a dead worker's rounds are redone or dropped).</summary>
    public int WorkUnits { get; init; }

    /// <summary>Values per key.</summary>
    public int Width { get; init; } = 1;

    /// <summary>Sleep between rounds, so a run can be made long (for kill tests).</summary>
    public int PauseMs { get; init; }

    /// <summary>When set, only this rank pauses: the others run ahead as far as the consistency model allows.</summary>
    public int? SlowRank { get; init; }

    public UpdateMode Mode { get; init; } = UpdateMode.Async;

    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    public string Table { get; init; } = "counter";

    public void Validate()
    {
        if (Keys < 1 || Rounds < 1 || Width < 1 || PauseMs < 0 || WorkUnits < 0)
        {
            throw new ArgumentException($"counter needs --keys >= 1, --rounds >= 1, --width >= 1 and --pause-ms >= 0 (got {Keys}, {Rounds}, {Width}, {PauseMs})");
        }
    }
}

/// <summary>
/// The self-check users run against any cluster: every worker reads the starting values (zeros, or a restored
/// checkpoint), pushes +1 to every key R times, asynchronously under the table's consistency; after a barrier each
/// worker pulls everything and checks that every value grew by exactly workers x R. Any mismatch (a lost or doubled
/// update) fails the run.
/// </summary>
public sealed class CounterApp(CounterOptions options) : IPsApp
{
    public string Name => "counter";

    public async Task<int> RunAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = context.Client;
        var table = await client.DeclareTableAsync(new TableSpec(options.Table, options.Width) { Mode = options.Mode }, cancellationToken).ConfigureAwait(false);
        table.Consistency = options.Consistency;
        ulong[] keys = SpreadKeys(options.Keys);
        float[] ones = new float[keys.Length * options.Width];
        Array.Fill(ones, 1f);
        bool pauses = options.PauseMs > 0 && (options.SlowRank is null || options.SlowRank == context.Rank);
        context.Log.LogInformation("Counter on rank {Rank}: {Keys} keys x width {Width}, {Rounds} rounds, {Mode} table, {Consistency}",
            context.Rank, keys.Length, options.Width, options.Rounds, options.Mode.ToString().ToLowerInvariant(), options.Consistency);

        // A worker that joined the running job after the start cannot know the starting values: it helps with the
        // work units and leaves the check to the others.
        bool late = client.JoinedLate;
        if (late && options.WorkUnits == 0)
        {
            throw new ArgumentException("a counter worker that joins a running job needs --work-units: the job's rounds are then shared through the scheduler's work queue");
        }
        // What the table holds before this run (zeros, or a restored checkpoint): read before anyone pushes.
        float[] initial = new float[ones.Length];
        if (!late)
        {
            await table.PullAsync(keys, initial, cancellationToken).ConfigureAwait(false);
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        }

        var watch = Stopwatch.StartNew();
        int pushes = 0;
        // The longest any call waited for its answer: a server that hangs or is cut off shows here as the time the
        // worker's calls waited for the failover.
        var stalls = new LongestCall();
        client.Diagnostics.CallObserver = stalls;
        if (options.WorkUnits > 0)
        {
            await client.DeclareWorkAsync(options.WorkUnits, cancellationToken).ConfigureAwait(false);
            // One round per unit; the pause stands for computing the update, then the push; the unit is reported done
            // only once its push is acknowledged.
            while (await client.ClaimWorkAsync(cancellationToken).ConfigureAwait(false) is int unit)
            {
                if (pauses)
                {
                    await Task.Delay(options.PauseMs, cancellationToken).ConfigureAwait(false);
                }
                table.Wait(table.Push(keys, ones));
                pushes++;
                client.Diagnostics.ReportStep(1);
                await client.CompleteWorkAsync(unit, cancellationToken).ConfigureAwait(false);
            }
        }
        else
        {
            long[] timestamps = new long[options.Rounds];
            for (int round = 0; round < options.Rounds; round++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                timestamps[round] = table.Push(keys, ones);
                client.Diagnostics.ReportStep(1);
                if (pauses)
                {
                    await Task.Delay(options.PauseMs, cancellationToken).ConfigureAwait(false);
                }
            }
            foreach (long t in timestamps)
            {
                table.Wait(t); // throws the first failed push
            }
            pushes = options.Rounds;
        }
        if (client.DrainRequested)
        {
            // Drained: its units are done and acknowledged; the others do the rest and check the values.
            Report(context, late: false, drained: true, pushes, keys.Length);
            return 0;
        }
        await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        if (late)
        {
            Report(context, late: true, drained: false, pushes, keys.Length);
            return 0;
        }

        float[] values = new float[ones.Length];
        await table.PullAsync(keys, values, cancellationToken).ConfigureAwait(false);
        float expected = (float)context.WorkerCount * options.Rounds;
        // With a work queue, every reported completion was applied in full; a unit a dead worker held may also have been
        // applied in part (reassigned or dropped ones): the values grow by at least the completions, at most that many more.
        float slack = 0;
        var work = client.Diagnostics.WorkCounts;
        if (options.WorkUnits > 0)
        {
            expected = work.Completions;
            slack = work.Reassigned + work.Dropped;
        }
        int mismatches = 0;
        int firstBad = -1;
        float grewMin = float.MaxValue;
        float grewMax = float.MinValue;
        for (int i = 0; i < values.Length; i++)
        {
            float grew = values[i] - initial[i];
            grewMin = Math.Min(grewMin, grew);
            grewMax = Math.Max(grewMax, grew);
            if (grew < expected || grew > expected + slack)
            {
                mismatches++;
                firstBad = firstBad < 0 ? i : firstBad;
            }
        }
        double seconds = watch.Elapsed.TotalSeconds;
        if (context.Json)
        {
            var summary = new Dictionary<string, object?>
            {
                ["app"] = "counter",
                ["ok"] = mismatches == 0,
                ["rank"] = context.Rank,
                ["keys"] = keys.Length,
                ["pushes"] = pushes,
                ["expected"] = expected,
                ["initial_min"] = initial.Min(),
                ["initial_max"] = initial.Max(),
                ["initial_sum"] = initial.Sum(v => (double)v),
                ["mismatches"] = mismatches,
                ["seconds"] = Math.Round(seconds, 3),
                ["grew_min"] = grewMin,
                ["grew_max"] = grewMax,
                ["work_units"] = options.WorkUnits,
                ["completions"] = work.Completions,
                ["reassigned"] = work.Reassigned,
                ["dropped"] = work.Dropped,
                ["resent_slices"] = client.Diagnostics.Failovers,
                ["stall_ms"] = Math.Round(stalls.Longest.TotalMilliseconds, 1),
                ["failover_ms"] = client.Diagnostics.LastFailover is { } f ? Math.Round(f.TotalMilliseconds, 1) : -1,
                ["failover_answered_unix_ms"] = client.Diagnostics.LastFailoverAnsweredUnixMs,
            };
            // This worker's own counters (the job's need every worker at a barrier, and workers that joined or were
            // drained have left by now).
            var own = client.Diagnostics.Traffic();
            summary["bytes_sent"] = own.BytesSent;
            summary["bytes_received"] = own.BytesReceived;
            summary["traffic"] = own.ToJson();
            context.Output.WriteLine(JsonSerializer.Serialize(summary));
        }
        else if (mismatches == 0)
        {
            context.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"counter OK: rank {context.Rank}, {keys.Length} keys x width {options.Width}, every value grew by {(slack == 0 ? $"exactly {expected}" : $"{expected} to {expected + slack}")} ({(options.WorkUnits > 0 ? $"{work.Completions} work units done, {work.Reassigned} reassigned, {work.Dropped} dropped" : $"{context.WorkerCount} workers x {options.Rounds} rounds")}) in {seconds:0.00} s"));
        }
        if (mismatches > 0)
        {
            int key = firstBad / options.Width;
            context.Log.LogError("Counter FAILED on rank {Rank}: {Mismatches} of {Total} values differ from their start value + {Expected}; first: key {Key} = {Value}, started at {Initial}",
                context.Rank, mismatches, values.Length, expected, keys[key], values[firstBad], initial[firstBad]);
            return 1;
        }
        return 0;
    }

    /// <summary>The summary of a worker that does not check the values (it joined late, or was drained).</summary>
    private static void Report(WorkerContext context, bool late, bool drained, int pushes, int keys)
    {
        var work = context.Client.Diagnostics.WorkCounts;
        if (context.Json)
        {
            context.Output.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["app"] = "counter",
                ["ok"] = true,
                ["checked"] = false,
                ["joined_late"] = late,
                ["drained"] = drained,
                ["rank"] = context.Rank,
                ["keys"] = keys,
                ["pushes"] = pushes,
                ["completions"] = work.Completions,
                ["resent_slices"] = context.Client.Diagnostics.Failovers,
            }));
            return;
        }
        context.Output.WriteLine(drained
            ? $"counter: rank {context.Rank} was drained after {pushes} work units; the other workers finish the job and check the values"
            : $"counter: rank {context.Rank} joined the running job and did {pushes} work units; the workers that started the job check the values");
    }

    /// <summary>N keys spread evenly over the uint64 space (ascending), so every server gets some even without hashing.</summary>
    public static ulong[] SpreadKeys(int count)
    {
        ulong step = ulong.MaxValue / (ulong)count;
        var keys = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            keys[i] = (ulong)i * step;
        }
        return keys;
    }
}
