using System.Diagnostics.Metrics;

using ParameterServer.Core.Diagnostics;

namespace ParameterServer;

/// <summary>
/// The parameter server's metrics, on one <see cref="System.Diagnostics.Metrics"/> meter named <see cref="MeterName"/>,
/// so that OpenTelemetry, dotnet-counters and `--metrics-port`'s Prometheus endpoint all see them. Counts the nodes
/// keep anyway (traffic, requests, rows) are read when a collector asks, through observable instruments, so the data
/// path pays nothing for them; only call latency is recorded per call, and only while a collector listens.
/// </summary>
public static class PsMetrics
{
    /// <summary>The meter's name: what to add to an OpenTelemetry MeterProvider (AddMeter) or to dotnet-counters.</summary>
    public const string MeterName = "ParameterServer";

    private static readonly List<NodeMetrics> Nodes = new();

    internal static readonly Meter Meter = new(MeterName, typeof(PsMetrics).Assembly.GetName().Version?.ToString());

    /// <summary>Seconds from a push or pull being issued to its last answer, by node, table and operation.</summary>
    internal static readonly Histogram<double> CallDuration = Meter.CreateHistogram<double>("ps.client.call.duration", "s",
        "Time from a push or pull being issued to its last server's answer",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    /// <summary>
    /// Calls of the same table still incomplete when a call was issued: the staleness a worker actually ran with
    /// (at most tau under bounded delay; 0 under sequential consistency).
    /// </summary>
    internal static readonly Histogram<long> Staleness = Meter.CreateHistogram<long>("ps.client.call.staleness", "{call}",
        "Calls of the same table still incomplete when a call was issued (at most tau under bounded delay)",
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256] });

    static PsMetrics()
    {
        Observe("ps.node.messages", "{message}", "Frames sent and received, by direction and message type", counter: true, static (n, into) => n.Traffic(into, bytes: false));
        Observe("ps.node.traffic", "By", "Bytes sent and received (whole frames), by direction and message type", counter: true, static (n, into) => n.Traffic(into, bytes: true));
        Observe("ps.node.peer.traffic", "By", "Bytes sent and received, by direction and peer", counter: true, static (n, into) => n.PeerTraffic(into));
        Observe("ps.node.up", "{node}", "1 while the node runs, by role", counter: false, static (n, into) => into.Add(new Measurement<long>(1, n.Tags)));
        foreach (var (name, unit, description, counter) in NodeMetrics.RoleInstruments)
        {
            Observe(name, unit, description, counter, (n, into) => n.Extra(name, into));
        }
        Meter.CreateObservableGauge("ps.app.loss", () =>
        {
            var into = new List<Measurement<double>>();
            foreach (var node in Snapshot())
            {
                if (node.Loss?.Invoke() is double loss && double.IsFinite(loss))
                {
                    into.Add(new Measurement<double>(loss, node.Tags));
                }
            }
            return into;
        }, "1", "The training loss the worker's app last reported");
    }

    private static NodeMetrics[] Snapshot()
    {
        lock (Nodes)
        {
            return Nodes.ToArray();
        }
    }

    internal static void Add(NodeMetrics node)
    {
        lock (Nodes)
        {
            Nodes.Add(node);
        }
    }

    internal static void Remove(NodeMetrics node)
    {
        lock (Nodes)
        {
            Nodes.Remove(node);
        }
    }

    private static void Observe(string name, string unit, string description, bool counter, Action<NodeMetrics, List<Measurement<long>>> read)
    {
        IEnumerable<Measurement<long>> Read()
        {
            var into = new List<Measurement<long>>();
            foreach (var node in Snapshot())
            {
                read(node, into);
            }
            return into;
        }
        if (counter)
        {
            Meter.CreateObservableCounter(name, Read, unit, description);
        }
        else
        {
            Meter.CreateObservableGauge(name, Read, unit, description);
        }
    }
}
