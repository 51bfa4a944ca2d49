using System.Diagnostics;
using ParameterServer.Client.Dispatch;
using ParameterServer.Client.Routing;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Diagnostics;

namespace ParameterServer.Client.Diagnostics;

// Room: Diagnostics. Owns what a worker reports about itself about once a second (NodeReport): the steps, examples,
// loss and phase its app reports, the time between steps, and each server's answer times since the last report
// (counted by the links), plus the calls waiting longer than the slow-call threshold (found in the ledger).

/// <summary>A worker's progress and the health of its calls, reported to the scheduler with its traffic counters.</summary>
internal sealed class WorkerProgress(RouteTable routes, SliceLedger ledger, ControlChannel scheduler, TimeSpan slowCallAfter)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<int, (ServerLink Link, long Answers, long Ticks)> _answersReported = new();
    private long _steps, _examples, _lastStepAt, _intervalTicks, _intervalSteps;
    private double _loss = double.NaN, _fraction = double.NaN, _stepMs = double.NaN;
    private string _phase = "";
    private DateTime _lastStepUtc;

    private long _slowCalls;

    /// <summary>Steps, examples and the last loss the app reported, and the calls logged as slow (for the metrics).</summary>
    public (long Steps, long Examples, double Loss, long SlowCalls) Totals
    {
        get
        {
            lock (_lock)
            {
                return (_steps, _examples, _loss, Interlocked.Read(ref _slowCalls));
            }
        }
    }

    public void ReportStep(int examples, double loss)
    {
        long now = Stopwatch.GetTimestamp();
        var nowUtc = DateTime.UtcNow;
        DateTime startedUtc;
        long step;
        lock (_lock)
        {
            startedUtc = _lastStepUtc;
            _lastStepUtc = nowUtc;
            step = _steps;
            if (_lastStepAt != 0)
            {
                _intervalTicks += now - _lastStepAt;
                _intervalSteps++;
            }
            _lastStepAt = now;
            _steps++;
            _examples += examples;
            if (!double.IsNaN(loss))
            {
                _loss = loss;
            }
        }
        if (startedUtc != default)
        {
            PsTracing.RecordStep(startedUtc, nowUtc, step, examples); // the step: from the end of the one before to now
        }
    }

    public void ReportPhase(string phase, double fraction)
    {
        lock (_lock)
        {
            _phase = phase;
            _fraction = fraction;
        }
    }

    /// <summary>The report since the last one (the heartbeat thread calls it about once a second).</summary>
    public NodeReport TakeReport()
    {
        var report = new NodeReport();
        lock (_lock)
        {
            report.Steps = _steps;
            report.Examples = _examples;
            report.Loss = _loss;
            if (_intervalSteps > 0)
            {
                _stepMs = _intervalTicks * 1000.0 / Stopwatch.Frequency / _intervalSteps;
            }
            report.StepMs = _stepMs; // the last interval that had steps: a worker waiting at a barrier keeps its pace
            report.Phase = _phase;
            report.Fraction = _fraction;
            _intervalTicks = 0;
            _intervalSteps = 0;
            foreach (var link in routes.Current.BySlot.DistinctBy(l => l.Server.Id))
            {
                var (answers, ticks) = link.AnswerTotals;
                var (linkBefore, answersBefore, ticksBefore) = _answersReported.GetValueOrDefault(link.Server.Id);
                if (linkBefore != link)
                {
                    (answersBefore, ticksBefore) = (0, 0); // a new link to that server counts from zero
                }
                _answersReported[link.Server.Id] = (link, answers, ticks);
                if (answers > answersBefore)
                {
                    report.Servers.Add((link.Server.Id, (ticks - ticksBefore) * 1000.0 / Stopwatch.Frequency / (answers - answersBefore), answers - answersBefore));
                }
            }
        }
        scheduler.DescribeSlow(slowCallAfter, report.SlowCalls, newlySlow: null);
        ledger.DescribeSlow(slowCallAfter, NodeReport.MaxSlowCalls - report.SlowCalls.Count, report.SlowCalls, newlySlow: null);
        return report;
    }

    /// <summary>The calls that became slow since the last call (each once), for the log; the scan thread calls it.</summary>
    public List<string> NewlySlow()
    {
        List<string> slow = new(), newly = new();
        scheduler.DescribeSlow(slowCallAfter, slow, newly);
        ledger.DescribeSlow(slowCallAfter, 0, slow, newly);
        Interlocked.Add(ref _slowCalls, newly.Count);
        return newly;
    }
}
