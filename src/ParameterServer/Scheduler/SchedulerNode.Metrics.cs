using ParameterServer.Core.Diagnostics;
using ParameterServer.Protocol;

namespace ParameterServer.Scheduler;

/// <summary>The scheduler's values of the <see cref="PsMetrics"/> instruments of its role, read when a collector asks.</summary>
public sealed partial class SchedulerNode
{
    private NodeMetrics? _metrics;

    private void StartMetrics() => _metrics = new NodeMetrics("scheduler", () => SchedulerId, _traffic, ReportMetric);

    private void ReportMetric(string instrument, Action<long, KeyValuePair<string, object?>[]> emit)
    {
        lock (_lock)
        {
            switch (instrument)
            {
                case "ps.scheduler.nodes":
                    foreach (var role in new[] { NodeRole.Server, NodeRole.Worker })
                    {
                        string name = role == NodeRole.Server ? "server" : "worker";
                        var members = _nodes.Values.Where(n => n.Role == role).ToList();
                        emit(members.Count(n => n.Alive), [new("node_role", name), new("state", "alive")]);
                        emit(members.Count(n => !n.Alive && !n.Left), [new("node_role", name), new("state", "dead")]);
                        emit(members.Count(n => n.Left), [new("node_role", name), new("state", "left")]);
                    }
                    break;
                case "ps.scheduler.view":
                    emit(_viewNumber, []);
                    break;
                case "ps.scheduler.tables":
                    emit(_tables.Count, []);
                    break;
                case "ps.scheduler.events":
                    foreach (var (kind, count) in _events.Counts())
                    {
                        emit(count, [new("kind", kind)]);
                    }
                    break;
            }
        }
    }
}
