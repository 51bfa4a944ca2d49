using System.Globalization;
using Microsoft.Extensions.Logging;
using ParameterServer.Scheduler;
using ParameterServer.Server;

namespace ParameterServer.Tests;

/// <summary>The compiled log methods write the lines the hand-formatted calls wrote (format specifiers included).</summary>
public class LogMessageTests
{
    private sealed class Capture : ILogger
    {
        public List<(LogLevel Level, EventId Id, string Text)> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add((logLevel, eventId, formatter(state, exception)));
    }

    [Fact]
    public void Migration_lines_format_as_the_interpolated_strings_did()
    {
        var log = new Capture();
        double ms = 1234.56, moved = 0.1234;
        log.LogMigrationStarted(7, "server 3 joins", moved);
        log.LogMigrationDone(ms, 7, 9, "server 3 joins", moved);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture,
            $"Migration started in view {7u}: {"server 3 joins"}; {moved:P1} of the key space changes owner. The current owners copy it while serving"), log.Lines[0].Text);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture,
            $"Migration done in {ms:0} ms (views {7u}-{9u}): {"server 3 joins"}; {moved:P1} of the key space moved"), log.Lines[1].Text);
        Assert.Equal((LogLevel.Information, 3073), (log.Lines[0].Level, log.Lines[0].Id.Id));
    }

    [Fact]
    public void Templates_with_format_specifiers_keep_them()
    {
        var log = new Capture();
        log.LogCheckpointWritten(2, 5, 1000, 4096, 12.7);
        Assert.Equal("Server 2: wrote checkpoint epoch 5: 1000 rows, 4096 bytes in 13 ms", log.Lines[0].Text);
        Assert.Equal(LogLevel.Information, log.Lines[0].Level);
    }
}
