using System.Runtime.InteropServices;

namespace ParameterServer.Cli;

/// <summary>
/// How the process stops. Ctrl-C (SIGINT) stops it at once. SIGTERM, what Kubernetes sends on scale-down or eviction,
/// first runs the graceful step a command registered (a server or worker drains: its ranges move or its work goes
/// back, then it exits); a second SIGTERM, or SIGTERM with nothing registered, stops at once. A process that has not
/// ended 5 s after being stopped exits with 130.
/// </summary>
internal static class Termination
{
    private static readonly CancellationTokenSource Stopping = new();
    private static readonly Lock Gate = new();
    private static PosixSignalRegistration? s_sigterm;
    private static Action? s_graceful;
    private static bool s_gracefulStarted;

    /// <summary>Cancelled when the process must stop now.</summary>
    public static CancellationToken Token => Stopping.Token;

    public static void Install()
    {
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Stop();
        };
        s_sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true; // not the runtime's default exit: we decide
            Action? graceful;
            lock (Gate)
            {
                graceful = s_gracefulStarted ? null : s_graceful;
                s_gracefulStarted = true;
            }
            if (graceful is null)
            {
                Stop();
                return;
            }
            graceful();
        });
    }

    /// <summary>Registers what the first SIGTERM does instead of stopping at once (until disposed).</summary>
    public static IDisposable OnFirstSigterm(Action graceful)
    {
        lock (Gate)
        {
            s_graceful = graceful;
        }
        return new Unregister();
    }

    /// <summary>Stops the process now: cancels <see cref="Token"/>, and exits with 130 if that has not ended it within 5 s.</summary>
    public static void Stop()
    {
        Stopping.Cancel();
        _ = Task.Delay(TimeSpan.FromSeconds(5)).ContinueWith(_ => Environment.Exit(Hosting.ExitCodes.Interrupted), TaskScheduler.Default);
    }

    private sealed class Unregister : IDisposable
    {
        public void Dispose()
        {
            lock (Gate)
            {
                s_graceful = null;
            }
        }
    }
}
