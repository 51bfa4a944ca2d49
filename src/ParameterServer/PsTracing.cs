using System.Diagnostics;
using ParameterServer.Protocol;

namespace ParameterServer;

/// <summary>
/// The parameter server's spans, on one <see cref="ActivitySource"/> named <see cref="SourceName"/>: a worker's
/// push, pull and push-pull calls (issue to last answer), its app's steps, and a server's handling of each data
/// request. OpenTelemetry exports them (AddSource); `--trace FILE` writes them as a Chrome trace. Nothing is created
/// unless a listener samples the source, so the data path pays nothing otherwise.
/// </summary>
public static class PsTracing
{
    /// <summary>The source's name: what to add to an OpenTelemetry TracerProvider (AddSource).</summary>
    public const string SourceName = "ParameterServer";

    internal static readonly ActivitySource Source = new(SourceName, typeof(PsTracing).Assembly.GetName().Version?.ToString());

    // Span names, interned: one string per kind, never built per call.
    private const string WorkerPush = "push", WorkerPull = "pull", WorkerPushPull = "pushpull";
    private const string ServerPush = "server push", ServerPull = "server pull", ServerPushPull = "server pushpull";

    /// <summary>A worker's call span, started now and not made current (it ends on a receive thread); null when nobody listens.</summary>
    internal static Activity? StartCall(MessageType kind, string table, long timestamp)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        var previous = Activity.Current;
        var span = Source.StartActivity(kind switch { MessageType.Push => WorkerPush, MessageType.Pull => WorkerPull, _ => WorkerPushPull }, ActivityKind.Client);
        Activity.Current = previous; // the call outlives this thread's scope
        span?.SetTag("table", table);
        span?.SetTag("call", timestamp);
        return span;
    }

    /// <summary>A server's span for one data request (disposed when handled); null when nobody listens.</summary>
    internal static Activity? StartRequest(in FrameHeader header)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        var span = Source.StartActivity(header.Type switch { MessageType.Push => ServerPush, MessageType.Pull => ServerPull, _ => ServerPushPull }, ActivityKind.Server);
        span?.SetTag("table", header.TableId);
        span?.SetTag("keys", header.KeyCount);
        span?.SetTag("worker", header.SenderId);
        return span;
    }

    /// <summary>A worker's app step from <paramref name="startedUtc"/> to <paramref name="endedUtc"/>; nothing when nobody listens.</summary>
    internal static void RecordStep(DateTime startedUtc, DateTime endedUtc, long step, int examples)
    {
        if (!Source.HasListeners())
        {
            return;
        }
        using var span = Source.StartActivity("step", ActivityKind.Internal, parentContext: default, startTime: startedUtc);
        span?.SetTag("step", step);
        span?.SetTag("examples", examples);
        span?.SetEndTime(endedUtc); // the next step starts where this one ends: no overlap on the timeline
    }
}
