using System.Diagnostics;
using System.Text;
using ParameterServer.Hosting.Network;

namespace ParameterServer.TestKit;

/// <summary>Runs the real `pserver` (built next to the tests) as a child process and captures its output.</summary>
internal sealed class Pserver : IDisposable
{
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private Pserver(IEnumerable<string> arguments, LabHost? host = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        string[] command = [Path.Combine(AppContext.BaseDirectory, "pserver.dll"), .. arguments];
        var (program, programArguments) = host is null ? ("dotnet", command) : NetworkLab.Wrap(host, "dotnet", command);
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in programArguments)
        {
            info.ArgumentList.Add(a);
        }
        info.Environment["PS_EXIT_WITH_PARENT"] = "1"; // never outlive the test run
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }
        Process = new Process { StartInfo = info, EnableRaisingEvents = true };
        Process.OutputDataReceived += (_, e) => Append(_stdout, e.Data);
        Process.ErrorDataReceived += (_, e) => Append(_stderr, e.Data);
        Process.Exited += (_, _) => _exited.TrySetResult();
        Process.Start();
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
    }

    public Process Process { get; }

    public string Stdout
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    public string[] StdoutLines => Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static void Append(StringBuilder target, string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (target)
        {
            target.AppendLine(line);
        }
    }

    public static Pserver Start(params string[] arguments) => new(arguments);

    /// <summary>Starts `pserver` with these environment variables set (as a launcher such as ps-lite's or srun would).</summary>
    public static Pserver StartWith(IReadOnlyDictionary<string, string> environment, params string[] arguments) => new(arguments, environment: environment);

    /// <summary>Starts `pserver` inside a <see cref="NetworkLab"/> host's namespace (`ip netns exec` replaces itself with it: same pid).</summary>
    public static Pserver StartOn(LabHost host, params string[] arguments) => new(arguments, host);

    /// <summary>Runs to completion; fails the test with the captured output if it takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<Pserver> RunAsync(TimeSpan timeout, params string[] arguments)
    {
        var p = new Pserver(arguments);
        await p.WaitForExitAsync(timeout);
        return p;
    }

    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _exited.Task.WaitAsync(timeout);
            await Process.WaitForExitAsync(); // drains the output readers
        }
        catch (TimeoutException)
        {
            Kill();
            throw new TimeoutException($"pserver {string.Join(' ', Process.StartInfo.ArgumentList.SkipWhile(a => !a.EndsWith("pserver.dll", StringComparison.Ordinal)).Skip(1))} ran longer than {timeout}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }
    }

    /// <summary>Waits until a line of standard output (or standard error: the logs) matches; returns it.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout, bool stderr = false)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var lines = stderr ? Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : StdoutLines;
            if (lines.FirstOrDefault(match) is { } line)
            {
                return line;
            }
            if (Process.HasExited)
            {
                break;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"no matching output line within {timeout}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
    }

    public int ExitCode => Process.ExitCode;

    public string Describe() => $"{(Process.HasExited ? $"exit code {Process.ExitCode}" : "still running")}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";

    public void Kill()
    {
        try
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    public void Dispose()
    {
        Kill();
        Process.Dispose();
    }
}
