using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace ParameterServer.Hosting;

/// <summary>The loggers every pserver node uses.</summary>
public static class Logging
{
    /// <summary>One line per message on standard error (standard output carries results and JSON).</summary>
    public static ILoggerFactory Create(string level)
    {
        var minimum = level.ToLowerInvariant() switch
        {
            "trace" => LogLevel.Trace,
            "debug" => LogLevel.Debug,
            "info" or "information" => LogLevel.Information,
            "warn" or "warning" => LogLevel.Warning,
            "error" => LogLevel.Error,
            "none" => LogLevel.None,
            _ => throw new ArgumentException($"--log-level must be trace, debug, info, warning, error or none, got '{level}'"),
        };
        return LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(minimum);
            builder.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.ColorBehavior = LoggerColorBehavior.Disabled;
            });
            builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
    }
}
