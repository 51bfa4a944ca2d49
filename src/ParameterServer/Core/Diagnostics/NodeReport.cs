using ParameterServer.Protocol;

namespace ParameterServer.Core.Diagnostics;

// Room: Diagnostics. The data model of what a worker tells the scheduler about itself about once a second, after its
// traffic counters on a heartbeat: its app's progress, how long its steps take, how long each server takes to answer
// it, and the calls that have waited too long. Plain data; the worker's WorkerProgress fills it, the scheduler keeps
// the last one per node and `pserver status` and the dashboard show it.

/// <summary>A worker's progress and the health of its calls since its last report.</summary>
internal sealed class NodeReport
{
    /// <summary>The most slow calls one report lists.</summary>
    public const int MaxSlowCalls = 8;

    /// <summary>Steps (batches) the app reported, and their examples, since the worker started.</summary>
    public long Steps;
    public long Examples;
    /// <summary>The app's last reported loss (NaN: none).</summary>
    public double Loss = double.NaN;
    /// <summary>Mean time between steps over the last report interval that had steps (NaN: fewer than two steps yet).</summary>
    public double StepMs = double.NaN;
    /// <summary>The app's phase and how far it has come (0..1; NaN: not reported).</summary>
    public string Phase = "";
    public double Fraction = double.NaN;
    /// <summary>Per server: the mean time it took to answer this worker's requests since the last report, and how many.</summary>
    public readonly List<(int Server, double AnswerMs, long Answers)> Servers = new();
    /// <summary>Calls in flight longer than the slow-call threshold: what each waits for and how long.</summary>
    public readonly List<string> SlowCalls = new();

    public void Write(PayloadWriter w)
    {
        w.WriteInt64(Steps);
        w.WriteInt64(Examples);
        w.WriteDouble(Loss);
        w.WriteDouble(StepMs);
        w.WriteString(Phase);
        w.WriteDouble(Fraction);
        w.WriteInt32(Servers.Count);
        foreach (var (server, answerMs, answers) in Servers)
        {
            w.WriteInt32(server);
            w.WriteDouble(answerMs);
            w.WriteInt64(answers);
        }
        w.WriteInt32(SlowCalls.Count);
        foreach (string call in SlowCalls)
        {
            w.WriteString(call);
        }
    }

    public static NodeReport Read(ref PayloadReader r)
    {
        var report = new NodeReport
        {
            Steps = r.ReadInt64(),
            Examples = r.ReadInt64(),
            Loss = r.ReadDouble(),
            StepMs = r.ReadDouble(),
            Phase = r.ReadString(256),
            Fraction = r.ReadDouble(),
        };
        int servers = r.ReadCount(1 << 16);
        for (int i = 0; i < servers; i++)
        {
            report.Servers.Add((r.ReadInt32(), r.ReadDouble(), r.ReadInt64()));
        }
        int slow = r.ReadCount(MaxSlowCalls);
        for (int i = 0; i < slow; i++)
        {
            report.SlowCalls.Add(r.ReadString(1024));
        }
        return report;
    }
}
