using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Cluster;

namespace ParameterServer.Cli;

/// <summary>`pserver status`: nodes, roles, liveness and key ranges of a running job, from its scheduler.</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var command = new Command("status", "Show the nodes, their liveness and the key ranges of a running job") { Options.Scheduler, Options.Json };
        command.SetAction((p, ct) => ExitCodes.Guard(async () =>
        {
            string address = p.GetValue(Options.Scheduler)!;
            var view = await ControlChannel.FetchViewAsync(address, TimeSpan.FromSeconds(10), ct);
            var ranges = Ranges(view);
            if (p.GetValue(Options.Json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    view = view.Number,
                    ready = view.Ready,
                    nodes = view.Nodes.Select(n => new { id = n.Id, role = n.Role.ToString().ToLowerInvariant(), rank = n.Rank, address = n.Address, alive = n.Alive }),
                    ranges = ranges.Select(r => new { server = r.Server, start = Hex(r.Start), end = Hex(r.End) }),
                    tables = view.Tables.Select(t => new { id = t.Id, name = t.Name, width = t.Width, handler = t.Handler, mode = t.Mode.ToString().ToLowerInvariant(), dense_size = t.DenseSize }),
                }));
                return ExitCodes.Ok;
            }
            Console.Out.WriteLine($"view {view.Number} ({(view.Ready ? "running" : $"starting: waiting for {view.ExpectedServers} servers and {view.ExpectedWorkers} workers")})");
            Console.Out.WriteLine($"{"id",4}  {"role",-9}  {"rank",4}  {"address",-22}  state");
            foreach (var n in view.Nodes)
            {
                Console.Out.WriteLine($"{n.Id,4}  {n.Role.ToString().ToLowerInvariant(),-9}  {n.Rank,4}  {n.Address,-22}  {(n.Alive ? "alive" : "dead")}");
            }
            Console.Out.WriteLine($"key space: {ranges.Count} ranges on the consistent-hash ring ({view.VirtualNodes} virtual nodes per server)");
            foreach (var group in ranges.GroupBy(r => r.Server).OrderBy(g => g.Key))
            {
                double share = group.Sum(r => (double)(r.End - r.Start + 1)) / Math.Pow(2, 64);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  server {group.Key}: {group.Count()} ranges, {share:P1} of the ring"));
            }
            foreach (var t in view.Tables)
            {
                Console.Out.WriteLine($"table {t.Id}: {t.Describe()}");
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The ring as inclusive [start, end] ranges of hashed positions, adjacent arcs of one server merged.</summary>
    internal static List<(ulong Start, ulong End, int Server)> Ranges(ClusterView view)
    {
        var ranges = new List<(ulong Start, ulong End, int Server)>();
        if (view.Ring.IsEmpty)
        {
            return ranges;
        }
        var arcs = view.Ring.Arcs().ToList();
        // Arcs()[0] wraps around zero: split it into [0, end] and [start + 1, max].
        var (wrapStart, wrapEnd, wrapServer) = arcs[0];
        var linear = new List<(ulong Start, ulong End, int Server)> { (0, wrapEnd, wrapServer) };
        linear.AddRange(arcs.Skip(1).Select(a => (a.StartExclusive + 1, a.EndInclusive, a.Server)));
        if (wrapStart != ulong.MaxValue)
        {
            linear.Add((wrapStart + 1, ulong.MaxValue, wrapServer));
        }
        foreach (var r in linear)
        {
            if (ranges.Count > 0 && ranges[^1].Server == r.Server && ranges[^1].End + 1 == r.Start)
            {
                ranges[^1] = (ranges[^1].Start, r.End, r.Server);
            }
            else
            {
                ranges.Add(r);
            }
        }
        return ranges;
    }

    private static string Hex(ulong value) => "0x" + value.ToString("x16", CultureInfo.InvariantCulture);
}
