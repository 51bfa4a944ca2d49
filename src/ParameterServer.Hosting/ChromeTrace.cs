using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace ParameterServer.Hosting;

/// <summary>
/// `--trace FILE`: records this process's <see cref="PsTracing"/> spans and writes them, when disposed, as a Chrome
/// trace (the trace-event JSON format BytePS's timeline uses; open it in chrome://tracing or ui.perfetto.dev). A
/// worker records the spans of a window of its app's steps; a node without steps (a server) records every span, at
/// most <see cref="MaxEvents"/>. <see cref="Merge"/> makes one timeline of a local job's files.
/// </summary>
public sealed class ChromeTrace : IDisposable
{
    /// <summary>The most spans one process keeps (about 100 bytes each).</summary>
    public const int MaxEvents = 200_000;

    private readonly string _path;
    private readonly long _fromStep, _toStep;
    private readonly ActivityListener _listener;
    private readonly Lock _lock = new();
    private readonly List<(string Name, long StartUs, long DurationUs, string? Detail)> _spans = new();
    private long _stepInProgress;
    private DateTime _windowEndUtc = DateTime.MaxValue;
    private bool _written;

    /// <param name="path">Where to write the trace.</param>
    /// <param name="process">The process's name on the timeline (e.g. "worker 3").</param>
    /// <param name="fromStep">The first step recorded (-1: every span, for nodes without steps).</param>
    /// <param name="toStep">The step after the last one recorded.</param>
    public ChromeTrace(string path, string process, long fromStep, long toStep)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (fromStep >= 0 && toStep <= fromStep)
        {
            throw new ArgumentException($"the step window {fromStep}-{toStep} is empty (FROM-TO, TO excluded)", nameof(toStep));
        }
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null && !Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"--trace {path}: the folder {folder} does not exist");
        }
        (_path, ProcessName, _fromStep, _toStep) = (path, process, fromStep, toStep);
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == PsTracing.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = OnStopped,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>The process's name on the timeline (set it once the node knows its id).</summary>
    public string ProcessName { get; set; }

    /// <summary>Parses --trace-steps FROM-TO.</summary>
    public static (long From, long To) ParseSteps(string steps)
    {
        var parts = (steps ?? "").Split('-');
        if (parts.Length != 2 || !long.TryParse(parts[0], CultureInfo.InvariantCulture, out long from) || !long.TryParse(parts[1], CultureInfo.InvariantCulture, out long to) || from < 0 || to <= from)
        {
            throw new ArgumentException($"--trace-steps '{steps}': expected FROM-TO with 0 <= FROM < TO (TO excluded), e.g. 10-20");
        }
        return (from, to);
    }

    private void OnStopped(Activity span)
    {
        bool isStep = span.OperationName == "step";
        long step = isStep && span.GetTagItem("step") is long s ? s : -1;
        lock (_lock)
        {
            // A call belongs to the window if it ended during it, or began before its last step ended.
            bool inWindow = _fromStep < 0 || (isStep
                ? step >= _fromStep && step < _toStep
                : _stepInProgress >= _fromStep && (_stepInProgress < _toStep || span.StartTimeUtc < _windowEndUtc));
            if (isStep)
            {
                _stepInProgress = step + 1;
                if (step == _toStep - 1)
                {
                    _windowEndUtc = span.StartTimeUtc + span.Duration;
                }
            }
            if (!inWindow || _spans.Count >= MaxEvents)
            {
                return;
            }
            long startUs = (span.StartTimeUtc.Ticks - DateTime.UnixEpoch.Ticks) / 10; // Unix microseconds: one clock for all processes of a machine
            string? detail = span.Status == ActivityStatusCode.Error ? span.StatusDescription : null;
            string tags = string.Join(", ", span.TagObjects.Select(t => $"{t.Key} {t.Value}"));
            _spans.Add((span.OperationName, startUs, Math.Max(1, span.Duration.Ticks / 10), detail is null ? tags : $"{tags}; failed: {detail}"));
        }
    }

    /// <summary>Stops recording and writes the file (once).</summary>
    public void Dispose()
    {
        _listener.Dispose();
        lock (_lock)
        {
            if (_written)
            {
                return;
            }
            _written = true;
            var events = new JsonArray
            {
                new JsonObject { ["name"] = "process_name", ["ph"] = "M", ["pid"] = Environment.ProcessId, ["args"] = new JsonObject { ["name"] = ProcessName } },
            };
            // Calls overlap (many in flight): each goes on the first lane (thread row) free at its start.
            bool steps = _fromStep >= 0; // a worker: lane 0 is its app's steps
            var laneEnds = new List<long> { 0 };
            foreach (var (name, start, duration, detail) in _spans.OrderBy(s => s.StartUs))
            {
                int lane = 0;
                if (name != "step")
                {
                    lane = laneEnds.FindIndex(steps ? 1 : 0, end => end <= start);
                    if (lane < 0)
                    {
                        lane = laneEnds.Count;
                        laneEnds.Add(0);
                    }
                }
                laneEnds[lane] = Math.Max(laneEnds[lane], start + duration);
                events.Add(new JsonObject
                {
                    ["name"] = name, ["cat"] = "ps", ["ph"] = "X", ["ts"] = start, ["dur"] = duration, ["pid"] = Environment.ProcessId, ["tid"] = lane,
                    ["args"] = new JsonObject { ["detail"] = detail },
                });
            }
            for (int lane = 0; lane < laneEnds.Count; lane++)
            {
                events.Add(new JsonObject { ["name"] = "thread_name", ["ph"] = "M", ["pid"] = Environment.ProcessId, ["tid"] = lane, ["args"] = new JsonObject { ["name"] = !steps ? $"requests {lane + 1}" : lane == 0 ? "steps" : $"calls {lane}" } });
            }
            var trace = new JsonObject { ["traceEvents"] = events, ["displayTimeUnit"] = "ms", ["ps_steps"] = steps };
            File.WriteAllText(_path, trace.ToJsonString());
        }
    }

    /// <summary>
    /// One timeline from the traces of a job's processes: every event of the step-windowed ones (workers), and of the
    /// others (servers) those that overlap the workers' window. Returns the number of spans written.
    /// </summary>
    public static int Merge(IReadOnlyList<string> parts, string path)
    {
        var traces = parts.Where(File.Exists).Select(p => JsonNode.Parse(File.ReadAllText(p))!.AsObject()).ToList();
        static IEnumerable<JsonObject> Spans(JsonObject t) => t["traceEvents"]!.AsArray().Select(e => e!.AsObject()).Where(e => (string?)e["ph"] == "X");
        var windowed = traces.Where(t => (bool?)t["ps_steps"] == true).SelectMany(Spans).ToList();
        long from = windowed.Count > 0 ? windowed.Min(e => (long)e["ts"]!) : long.MinValue;
        long to = windowed.Count > 0 ? windowed.Max(e => (long)e["ts"]! + (long)e["dur"]!) : long.MaxValue;
        var events = new JsonArray();
        int spans = 0;
        foreach (var trace in traces)
        {
            bool keepAll = (bool?)trace["ps_steps"] == true;
            foreach (var e in trace["traceEvents"]!.AsArray().Select(e => e!.AsObject()))
            {
                bool span = (string?)e["ph"] == "X";
                if (span && !keepAll && ((long)e["ts"]! + (long)e["dur"]! < from || (long)e["ts"]! > to))
                {
                    continue;
                }
                spans += span ? 1 : 0;
                events.Add(e.DeepClone());
            }
        }
        File.WriteAllText(path, new JsonObject { ["traceEvents"] = events, ["displayTimeUnit"] = "ms" }.ToJsonString());
        return spans;
    }
}
