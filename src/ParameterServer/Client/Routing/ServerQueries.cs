using System.Runtime.InteropServices;
using System.Text;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Client.Routing;

// Room: Routing. Owns nothing: requests to every server of the routes that bypass the push/pull machinery (bulk and
// rare, so they may allocate): server counters (diagnostics) and table scans (model export). They sit next to the
// links' side calls (ServerLink.CallAsync) rather than in Diagnostics, so Diagnostics stays a leaf every room may use.

/// <summary>Side requests to the servers: their counters, and every row of a table.</summary>
internal sealed class ServerQueries(int nodeId, WorkerOptions options, RouteTable routeTable)
{
    /// <summary>Asks every server for its counters (JSON objects, one per server).</summary>
    public async Task<string[]> GetServerStatsAsync(CancellationToken cancellationToken)
    {
        var links = routeTable.Connected.BySlot;
        var results = new List<string>(links.Length);
        for (int i = 0; i < links.Length; i++)
        {
            var request = new FrameHeader { Type = MessageType.ServerStats, SenderId = nodeId, RequestId = routeTable.NextRequestId(), RowWidth = 1, ElementType = WireElementType.Float32 };
            try
            {
                var (_, payload) = await links[i].CallAsync(request, "a stats request", options.RequestTimeout, cancellationToken).ConfigureAwait(false);
                results.Add(Encoding.UTF8.GetString(payload));
            }
            catch (PsException ex) when (ex.Code == PsErrorCode.ConnectionLost)
            {
                // The server died during the call: its counters died with it, and the job goes on without it.
            }
        }
        return [.. results];
    }

    /// <summary>
    /// Runs a program of vector operations on every server at once (each over the blocks it holds) and adds up the
    /// servers' shares of each dot product. Sent again only when every server refused it before running anything (the
    /// placement was changing); a program that ran on some servers and failed on others is an error.
    /// </summary>
    public async Task<double[]> RunVectorOpsAsync(IReadOnlyList<WireVectorOp> ops, CancellationToken cancellationToken)
    {
        var reductions = ops.Where(o => o.Kind.IsReduction()).Select(o => o.Kind).ToArray();
        int dots = reductions.Length;
        byte[] payload = VectorProgramCodec.Write(ops);
        long deadline = Environment.TickCount64 + (long)options.RequestTimeout.TotalMilliseconds;
        while (true)
        {
            var routes = routeTable.Connected;
            var calls = new Task<(FrameHeader Header, byte[] Payload)>[routes.BySlot.Length];
            for (int i = 0; i < calls.Length; i++)
            {
                var request = new FrameHeader
                {
                    Type = MessageType.VectorOps,
                    SenderId = nodeId,
                    RequestId = routeTable.NextRequestId(),
                    RowWidth = 1,
                    ElementType = WireElementType.Float32,
                    ViewNumber = routes.View.Number,
                    Round = routes.View.PlacementFingerprint, // the servers run it only under this placement
                };
                calls[i] = routes.BySlot[i].CallAsync(request, $"a program of {ops.Count} vector operations", options.RequestTimeout, cancellationToken, payload);
            }
            try
            {
                await Task.WhenAll(calls).ConfigureAwait(false);
            }
            catch (PsException)
            {
                var failures = calls.Where(c => c.IsFaulted).Select(c => c.Exception!.InnerException as PsException).ToList();
                if (failures.Count == calls.Length && failures.All(f => f?.Code == PsErrorCode.NotReady) && Environment.TickCount64 < deadline)
                {
                    // Every server refused before running anything (a placement change in progress): safe to send again.
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                    continue;
                }
                if (failures.Count == calls.Length)
                {
                    throw failures[0]!;
                }
                throw new PsException(PsErrorCode.Conflict,
                    $"a program of {ops.Count} vector operations ran on {calls.Length - failures.Count} of {calls.Length} servers and failed on the others ({failures[0]!.Message}): the tables it changes may differ between copies; start the solver again from a checkpoint", failures[0]);
            }
            var sums = new double[dots];
            foreach (var call in calls)
            {
                var answer = call.Result.Payload;
                if (answer.Length != dots * sizeof(double))
                {
                    throw new PsException(PsErrorCode.MalformedPayload, $"a server answered a vector program with {answer.Length} bytes for {dots} reductions");
                }
                var shares = MemoryMarshal.Cast<byte, double>(answer);
                for (int d = 0; d < dots; d++)
                {
                    // Each server answers for the blocks it is primary for: sums add up, maxima take the largest.
                    sums[d] = reductions[d] == VectorOpKind.MaxAbs ? Math.Max(sums[d], shares[d]) : sums[d] + shares[d];
                }
            }
            return sums;
        }
    }

    /// <summary>Every row the servers hold for a table, sorted by key (a bulk read: model export, checks).</summary>
    public async Task<(ulong[] Keys, float[] Values)> ReadAllAsync(TableInfo table, CancellationToken cancellationToken)
    {
        var keys = new List<ulong>();
        var values = new List<float>();
        int width = table.Words;
        var routes = routeTable.Connected;
        foreach (var link in routes.BySlot)
        {
            long cursor = 0;
            while (cursor >= 0)
            {
                var request = new FrameHeader
                {
                    Type = MessageType.Scan,
                    SenderId = nodeId,
                    RequestId = routeTable.NextRequestId(),
                    TableId = table.Id,
                    RowWidth = width,
                    ElementType = WireElementType.Float32,
                    Round = cursor,
                    ViewNumber = routes.View.Number,
                };
                var (header, payload) = await link.CallAsync(request, $"a scan of table '{table.Name}'", options.RequestTimeout, cancellationToken).ConfigureAwait(false);
                int rows = header.KeyCount;
                if (payload.Length != rows * (sizeof(ulong) + width * sizeof(float)))
                {
                    throw new PsException(PsErrorCode.MalformedPayload, $"{link.Server.Describe()} answered a scan with {payload.Length} bytes for {rows} rows");
                }
                keys.AddRange(MemoryMarshal.Cast<byte, ulong>(payload.AsSpan(0, rows * sizeof(ulong))));
                values.AddRange(MemoryMarshal.Cast<byte, float>(payload.AsSpan(rows * sizeof(ulong))));
                cursor = header.Round;
            }
        }
        var keyArray = keys.ToArray();
        var order = Enumerable.Range(0, keyArray.Length).ToArray();
        Array.Sort(keyArray, order);
        var sorted = new float[values.Count];
        for (int i = 0; i < order.Length; i++)
        {
            values.CopyTo(order[i] * width, sorted, i * width, width);
        }
        return (keyArray, sorted);
    }
}
