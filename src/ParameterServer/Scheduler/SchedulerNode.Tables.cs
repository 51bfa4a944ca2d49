using System.Globalization;
using ParameterServer.Core.Cluster;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>
/// Table declarations: the first worker to declare a table gives it an id and a place in the view; every declaration
/// is answered once every live server has accepted a view that holds the table (or fails after ViewAckTimeout).
/// </summary>
public sealed partial class SchedulerNode
{
    private sealed record PendingDeclare(Connection Connection, ulong RequestId, int TableId, uint ViewNumber, long Deadline);

    private void OnDeclareTable(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, List<Outgoing> outbox)
    {
        var spec = ControlMessages.ReadTableSpec(payload);
        spec.Validate();
        var existing = _tables.FirstOrDefault(t => t.Name == spec.Name);
        if (existing is not null)
        {
            if (!existing.SameDefinition(spec))
            {
                outbox.Add(Error(connection, header, ErrorCode.Conflict,
                    $"table '{spec.Name}' already exists as {existing.Describe()}, not {TableInfo.From(existing.Id, spec).Describe()}"));
                return;
            }
            _declares.Add(new PendingDeclare(connection, header.RequestId, existing.Id, _viewNumber, DeadlineAfter(_options.ViewAckTimeout)));
            CompleteDeclares(outbox);
            return;
        }
        if (spec.PlacementGroup is { } group && _tables.FirstOrDefault(t => t.Group == group) is { } member
            && (member.DenseSize != spec.DenseSize || member.BlockKeys != spec.BlockKeys))
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument,
                $"table '{spec.Name}' joins placement group '{group}' with dense size {spec.DenseSize} in blocks of {spec.BlockKeys} keys, but its table {member.Describe()} has blocks of {member.BlockKeys}: the tables of a group must be cut alike"));
            return;
        }
        string handlerName = spec.Handler.Split(':', 2)[0];
        // Integer tables take the built-in sum or max, which every server has (TableSpec.Validate checked the name).
        bool builtIn = spec.ElementType is ElementType.Int32 or ElementType.Int64;
        var lacking = builtIn ? [] : _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive && !n.Handlers.Contains(handlerName)).ToList();
        if (lacking.Count > 0)
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument,
                $"update handler '{handlerName}' of table '{spec.Name}' is unknown to {string.Join(", ", lacking.Select(n => n.Info.Describe()))}; they know: {string.Join(", ", lacking[0].Handlers.Where(h => !h.StartsWith(Extensions.ExtensionRegistry.PullFilterPrefix, StringComparison.Ordinal)))}"));
            return;
        }
        if (!Extensions.PullFilters.IsBuiltIn(spec.PullFilter))
        {
            string filterName = spec.PullFilter.Split(':', 2)[0].Trim();
            var without = _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive && !n.Handlers.Contains(Extensions.ExtensionRegistry.PullFilterPrefix + filterName)).ToList();
            if (without.Count > 0)
            {
                outbox.Add(Error(connection, header, ErrorCode.InvalidArgument,
                    $"pull filter '{filterName}' of table '{spec.Name}' is not registered on {string.Join(", ", without.Select(n => n.Info.Describe()))} (ServerOptions.AddPullFilter; built in: none, sigmod:THRESHOLD)"));
                return;
            }
        }
        var table = TableInfo.From(_tables.Count == 0 ? 1 : _tables.Max(t => t.Id) + 1, spec);
        if (OverMemoryCap(table) is { } refusal)
        {
            outbox.Add(Error(connection, header, ErrorCode.InvalidArgument, refusal));
            return;
        }
        _tables.Add(table);
        _log.LogTableDeclared(table.Describe(), table.Id);
        Publish(outbox);
        _declares.Add(new PendingDeclare(connection, header.RequestId, table.Id, _viewNumber, DeadlineAfter(_options.ViewAckTimeout)));
        CompleteDeclares(outbox);
    }

    /// <summary>
    /// Servers started with --max-memory-mb: the dense tables' blocks each would hold (as primary or replica, values
    /// and optimizer state) must fit under its cap with the new table. Sparse tables grow with use and are not counted.
    /// </summary>
    private string? OverMemoryCap(TableInfo table)
    {
        var servers = _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive).ToList();
        if (!servers.Any(n => n.MaxMemoryBytes > 0) || !table.IsDense || _view.Ring.IsEmpty)
        {
            return null;
        }
        int copies = Math.Max(1, _view.ChainLength);
        var before = MemoryCap.Held(_view.Ring, copies, _tables);
        var held = MemoryCap.Held(_view.Ring, copies, [.. _tables, table]);
        long HeldBy(NodeState n) => held.GetValueOrDefault(n.Id);
        var over = servers.Where(n => n.MaxMemoryBytes > 0 && HeldBy(n) > n.MaxMemoryBytes).ToList();
        if (over.Count == 0)
        {
            return null;
        }
        long cap = servers.Where(n => n.MaxMemoryBytes > 0).Min(n => n.MaxMemoryBytes);
        long total = held.Values.Sum();
        // Counted on the placements a job of that many servers could have, with the copies replication keeps there.
        int needed = MemoryCap.ServersNeeded([.. _tables, table], cap, _options.VirtualNodes,
            n => _options.Replication > 0 ? Math.Min(_options.Replication, n) : Math.Min(2, n), _options.Workers);
        var worst = over.MaxBy(HeldBy)!;
        return string.Create(CultureInfo.InvariantCulture,
            $"table '{table.Name}' ({MiB(table.DenseSize * (ulong)MemoryCap.RowBytes(table))} MiB with its optimizer state{(copies > 1 ? $", {copies} copies" : "")}) does not fit: {worst.Info.Describe()} would hold {MiB(HeldBy(worst))} MiB ({MiB(before.GetValueOrDefault(worst.Id))} MiB of it already), over its --max-memory-mb {MiB(worst.MaxMemoryBytes)}{(over.Count > 1 ? $", and {over.Count - 1} more servers are over theirs" : "")}. The job's tables need {MiB(total)} MiB in all: start at least {needed} servers (--servers {needed}) or raise --max-memory-mb");

        static string MiB(double bytes) => (bytes / (1 << 20)).ToString(bytes < 10 << 20 ? "0.0" : "N0", CultureInfo.InvariantCulture);
    }

    /// <summary>A declaration is answered once every live server has accepted a view that contains the table.</summary>
    private void CompleteDeclares(List<Outgoing> outbox)
    {
        for (int i = _declares.Count - 1; i >= 0; i--)
        {
            var d = _declares[i];
            var laggards = _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive && n.AckedView < d.ViewNumber).ToList();
            if (laggards.Count == 0)
            {
                var header = new FrameHeader { RequestId = d.RequestId };
                outbox.Add(Reply(d.Connection, header, ControlMessages.Ints(d.TableId, (int)d.ViewNumber)));
                _declares.RemoveAt(i);
            }
            else if (Environment.TickCount64 > d.Deadline)
            {
                var header = new FrameHeader { RequestId = d.RequestId };
                outbox.Add(Error(d.Connection, header, ErrorCode.NotReady,
                    $"{string.Join(", ", laggards.Select(n => n.Info.Describe()))} did not accept view {d.ViewNumber} within {_options.ViewAckTimeout.TotalSeconds:0.#} s"));
                _declares.RemoveAt(i);
            }
        }
    }
}
