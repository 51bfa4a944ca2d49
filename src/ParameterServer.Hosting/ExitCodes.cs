using ParameterServer.Transport;

namespace ParameterServer.Hosting;

/// <summary>Process exit codes of pserver (documented in the README).</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>The job ran but failed: a check mismatched, a node failed.</summary>
    public const int Failed = 1;
    /// <summary>Bad arguments, configuration or input data.</summary>
    public const int Usage = 2;
    /// <summary>A peer could not be reached, a connection broke, or a wait timed out.</summary>
    public const int Network = 3;
    /// <summary>Stopped by Ctrl-C, or the launcher that started this node died.</summary>
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
            return ex.Code switch
            {
                PsErrorCode.Unreachable or PsErrorCode.Timeout or PsErrorCode.ConnectionLost or PsErrorCode.ShuttingDown => Network,
                PsErrorCode.Unauthenticated => Usage, // the configuration: give every node the same --secret-file
                _ => Failed,
            };
        }
        catch (TransportException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return ex.IsAuthentication ? Usage : Network;
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Usage;
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Usage;
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or FileNotFoundException or DirectoryNotFoundException)
        {
            // A damaged or missing input file (the model library's format errors are FormatExceptions): its message names the file.
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

/// <summary>Bad input an app found in a file or an argument (exit code <see cref="ExitCodes.Usage"/>): apps derive their input errors from it.</summary>
public class UsageException(string message) : Exception(message);
