using System.Diagnostics.Tracing;

namespace ParameterServer.IntegrationTests;

/// <summary>Samples the runtime's allocation ticks (about one per 100 KB) to name what allocates when a test fails.</summary>
internal sealed class AllocProbe : EventListener
{
    public readonly Dictionary<string, long> Types = new();
    public bool On;

    public string Describe()
    {
        lock (Types)
        {
            return string.Join(", ", Types.OrderByDescending(kv => kv.Value).Take(8).Select(kv => $"{kv.Key} x{kv.Value}"));
        }
    }

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (!On || e.EventName != "GCAllocationTick_V4")
        {
            return;
        }
        string name = e.Payload![e.PayloadNames!.IndexOf("TypeName")]?.ToString() ?? "?";
        lock (Types)
        {
            Types[name] = Types.GetValueOrDefault(name) + 1;
        }
    }
}
