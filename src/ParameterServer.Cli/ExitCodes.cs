using ParameterServer.Transport;

namespace ParameterServer.Cli;

/// <summary>Process exit codes of pserver (documented in the README).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>The job ran but failed: a check mismatched, a node failed.</summary>
    public const int Failed = 1;
    /// <summary>Bad arguments, configuration or input data.</summary>
    public const int Usage = 2;
    /// <summary>A peer could not be reached, a connection broke, or a wait timed out.</summary>
    public const int Network = 3;
    public const int Interrupted = 130;

    /// <summary>Runs a command body, turning known exceptions into one clear line on standard error and an exit code.</summary>
    public static async Task<int> Guard(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (PsException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return ex.Code is PsErrorCode.Unreachable or PsErrorCode.Timeout or PsErrorCode.ConnectionLost or PsErrorCode.ShuttingDown ? Network : Failed;
        }
        catch (TransportException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Network;
        }
        catch (Apps.Data.DataFormatException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Usage;
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Usage;
        }
        catch (OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("interrupted");
            return Interrupted;
        }
    }
}
