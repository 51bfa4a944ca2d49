using System.Globalization;
using System.Text.Json;

namespace ParameterServer.Hosting;

/// <summary>
/// Progress on standard error: a redrawn bar when it is a terminal, otherwise a plain line at every 10% step
/// (so logs and CI output stay readable). Results on standard output are never mixed with it.
/// </summary>
public sealed class ConsoleProgress : IProgress<JobProgress>
{
    private readonly Lock _lock = new();
    private readonly bool _terminal = !Console.IsErrorRedirected;
    private string _phase = "";
    private int _step = -1;
    private bool _drawn;

    /// <summary>Draws the bar (a terminal) or prints a line at every 10% step.</summary>
    public void Report(JobProgress value)
    {
        lock (_lock)
        {
            double fraction = Math.Clamp(value.Fraction, 0, 1);
            if (_terminal)
            {
                int filled = (int)(fraction * 30);
                Console.Error.Write($"\r{value.Phase,-14} [{new string('#', filled)}{new string('.', 30 - filled)}] {fraction * 100,5:0.0}%");
                _drawn = true;
                return;
            }
            int step = (int)(fraction * 10);
            if (value.Phase != _phase || step != _step)
            {
                _phase = value.Phase;
                _step = step;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"progress: {value.Phase} {step * 10}%"));
            }
        }
    }

    /// <summary>Clears the bar before other output is printed.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            if (_drawn)
            {
                Console.Error.Write("\r" + new string(' ', 60) + "\r");
                _drawn = false;
            }
        }
    }
}

/// <summary>
/// A worker started by a launcher reports progress as JSON lines on standard output; the launcher draws them.
/// Only whole-percent changes are sent.
/// </summary>
public sealed class ProgressEvents : IProgress<JobProgress>
{
    /// <summary>Set to 1 by a launcher for its children: workers then report progress as JSON lines.</summary>
    public const string Variable = "PS_PROGRESS_EVENTS";
    /// <summary>How every progress line starts.</summary>
    public const string Prefix = "{\"event\":\"progress\"";

    private string _phase = "";
    private int _percent = -1;

    /// <summary>Prints a progress line when the whole percent or the phase changed.</summary>
    public void Report(JobProgress value)
    {
        int percent = (int)(Math.Clamp(value.Fraction, 0, 1) * 100);
        lock (this)
        {
            if (percent == _percent && value.Phase == _phase)
            {
                return;
            }
            _percent = percent;
            _phase = value.Phase;
        }
        Console.Out.WriteLine($"{Prefix},\"phase\":{JsonSerializer.Serialize(value.Phase)},\"fraction\":{(percent / 100.0).ToString(CultureInfo.InvariantCulture)}}}");
    }

    /// <summary>Reads a progress line a child printed; false for any other line.</summary>
    public static bool TryParse(string line, out JobProgress progress)
    {
        progress = default;
        if (!line.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }
        using var doc = JsonDocument.Parse(line);
        progress = new JobProgress(doc.RootElement.GetProperty("phase").GetString() ?? "", doc.RootElement.GetProperty("fraction").GetDouble());
        return true;
    }
}
