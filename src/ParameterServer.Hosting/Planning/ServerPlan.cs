using System.Globalization;
using System.Text;

namespace ParameterServer.Hosting.Planning;

/// <summary>What `pserver plan` is told or measured: one Downpour job whose workers pull the whole model and push a whole gradient every step.</summary>
public sealed record PlanInputs
{
    /// <summary>Bytes of parameters a worker pulls per step (and of gradient it pushes).</summary>
    public required long ModelBytes { get; init; }

    public required int Workers { get; init; }

    /// <summary>Each host's link, one way (links are full duplex), in bytes per second.</summary>
    public required double BytesPerSecond { get; init; }

    /// <summary>One worker's compute per step (forward and backward), in milliseconds.</summary>
    public required double ComputeMs { get; init; }

    /// <summary>Examples per worker step.</summary>
    public int Batch { get; init; } = 128;

    /// <summary>Bytes a server keeps per parameter byte (2 with AdaGrad's accumulator).</summary>
    public double StateFactor { get; init; } = 2;

    /// <summary>Copies of each parameter with two or more servers (chain replication); 1 server keeps 1.</summary>
    public int Replication { get; init; } = 2;

    /// <summary>Each server's cap (--max-memory-mb) in bytes; 0 for none.</summary>
    public long MaxMemoryBytes { get; init; }
}

/// <summary>The predicted step of one cluster size.</summary>
public sealed record PlanRow(int Servers, double ComputeMs, double PullMs, double PushMs, double StepMs, double ExamplesPerSecond, long BytesPerServer, bool Fits);

/// <summary>
/// The seed article's open question, how many servers for how many workers, answered with a bandwidth model. Per
/// step each worker pulls the model (M bytes) and pushes a gradient (M bytes), M / B each over its own link. With S
/// servers and R copies a server's link carries R W M / S bytes a step each way (the pulls it answers and the pushes it
/// forwards to its replicas): L = R W M / (S B). Two bounds: workers in lockstep wait for the servers' links on every
/// pull and push (step = compute + 2 max(M / B, L)); workers that drift apart interleave their pulls and pushes on the
/// full-duplex links (step = max(compute + 2 M / B, L)). The plan takes their mean, which the one-vs-many table
/// (`pserver bench yt8m-scale`) measured within 25% on 8 of 9 cluster sizes. Adding servers helps until L falls below a
/// worker's own compute and transfers.
/// </summary>
public static class ServerPlan
{
    public static IReadOnlyList<PlanRow> Predict(PlanInputs inputs, IEnumerable<int> serverCounts)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(serverCounts);
        return [.. serverCounts.Select(s => Row(inputs, s))];
    }

    public static PlanRow Row(PlanInputs inputs, int servers)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentOutOfRangeException.ThrowIfLessThan(servers, 1);
        int copies = servers == 1 ? 1 : Math.Min(inputs.Replication, servers);
        double oneWayMs = inputs.ModelBytes / inputs.BytesPerSecond * 1000;
        double serverLinkMs = oneWayMs * copies * inputs.Workers / servers;
        double lockstep = inputs.ComputeMs + (2 * Math.Max(oneWayMs, serverLinkMs));
        double interleaved = Math.Max(inputs.ComputeMs + (2 * oneWayMs), serverLinkMs);
        double step = (lockstep + interleaved) / 2;
        double pull = (step - inputs.ComputeMs) / 2, push = pull;
        long held = (long)(inputs.ModelBytes * inputs.StateFactor * copies / servers);
        bool fits = inputs.MaxMemoryBytes <= 0 || held * 1.1 <= inputs.MaxMemoryBytes;
        return new PlanRow(servers, inputs.ComputeMs, pull, push, step, inputs.Workers * inputs.Batch * 1000 / step, held, fits);
    }

    /// <summary>
    /// The fewest servers that fit in memory and make a step at most 10% longer than the shortest any number of servers
    /// can give (reached once R W / S &lt;= 1: each worker's own link is the limit).
    /// </summary>
    public static int Recommend(PlanInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        int enough = Math.Max(1, inputs.Replication * inputs.Workers);
        double shortest = Row(inputs, enough).StepMs;
        for (int s = 1; s <= 4096; s++)
        {
            var row = Row(inputs, s);
            if (row.Fits && row.StepMs <= shortest * 1.1)
            {
                return s;
            }
        }
        return 4096;
    }

    /// <summary>The plan as text: the inputs, a row per server count and the advice with its reason.</summary>
    public static string Explain(PlanInputs inputs, IEnumerable<int> serverCounts, string sources)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        double oneWayMs = inputs.ModelBytes / inputs.BytesPerSecond * 1000;
        text.AppendLine(c, $"model {inputs.ModelBytes / 1e6:N1} MB pulled and pushed by each of {inputs.Workers} workers every step; links {inputs.BytesPerSecond * 8 / 1e9:0.###} Gbit/s each way; compute {inputs.ComputeMs:0.#} ms a step ({sources})");
        text.AppendLine(c, $"one model over one link: {oneWayMs:0.#} ms. A server's link carries R x W / S models a step each way, its answers to pulls and the pushes it forwards to replicas (R = {inputs.Replication} copies with 2+ servers); the step is the mean of workers in lockstep and workers interleaving on the links");
        text.AppendLine("servers  compute ms  pull ms  push ms  step ms  examples/s  MB per server  fits");
        var counts = serverCounts.ToList();
        int recommended = Recommend(inputs);
        if (!counts.Contains(recommended))
        {
            counts.Add(recommended);
            counts.Sort();
        }
        foreach (var row in Predict(inputs, counts))
        {
            text.AppendLine(c, $"{row.Servers,7}  {row.ComputeMs,10:0.#}  {row.PullMs,7:0.#}  {row.PushMs,7:0.#}  {row.StepMs,7:0.#}  {row.ExamplesPerSecond,10:N0}  {row.BytesPerServer / 1e6,13:N1}  {(row.Fits ? "yes" : "no")}");
        }
        var best = Row(inputs, recommended);
        var one = Row(inputs, 1);
        text.Append(c, $"advice: {recommended} server{(recommended == 1 ? "" : "s")}: ");
        var fewer = recommended > 1 ? Row(inputs, recommended - 1) : null;
        text.Append(c, $"the fewest that fit{(inputs.MaxMemoryBytes > 0 ? $" under --max-memory-mb {inputs.MaxMemoryBytes / (1 << 20)}" : "")} and make a step at most 10% longer than the shortest ({Row(inputs, Math.Max(1, inputs.Replication * inputs.Workers)).StepMs:0.#} ms, once each worker's own link is the limit). ");
        text.Append(c, $"A step takes {best.StepMs:0.#} ms against {one.StepMs:0.#} ms on one server ({one.StepMs / best.StepMs:0.0}x)");
        text.Append(fewer is null ? "" : !fewer.Fits ? $"; {recommended - 1} would not fit in memory" : string.Create(c, $"; {recommended - 1} would take {fewer.StepMs:0.#} ms"));
        text.Append(best.PullMs > best.ComputeMs ? ". Communication outweighs compute: fewer, larger steps (--batch) or fewer pulls would pay more than servers" : "");
        return text.AppendLine().ToString();
    }
}
