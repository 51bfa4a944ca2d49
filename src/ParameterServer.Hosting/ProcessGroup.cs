using System.Diagnostics;
using System.Reflection;

namespace ParameterServer.Hosting;

/// <summary>
/// Child pserver processes of one command (`local`, `bench`): started with a pipe on standard input (they exit when
/// we die, see <see cref="ParentWatch"/>), their output streamed with a <c>[name]</c> prefix, all killed on dispose.
/// </summary>
public sealed class ProcessGroup : IDisposable
{
    private readonly List<Child> _children = new();
    private readonly List<Task> _pumps = new();

    /// <summary>Serialises what the pumps print (and what callers print while children run).</summary>
    public Lock Output { get; } = new();

    /// <summary>A started child: the name its output is prefixed with, and its process.</summary>
    public sealed record Child(string Name, Process Process);

    /// <summary>The child started last.</summary>
    public Child Last => _children[^1];

    /// <summary>
    /// Starts `pserver ARGUMENTS`. Each standard output line goes to <paramref name="onLine"/> first; it is echoed
    /// (prefixed) unless the callback returns false. Standard error is always echoed.
    /// </summary>
    public Child Start(string name, IEnumerable<string> arguments, Func<string, bool>? onLine = null) => StartIn(null, name, arguments, onLine);

    /// <summary>Starts `pserver ARGUMENTS` inside <paramref name="host"/>'s network namespace (`ip netns exec` becomes the process: same pid).</summary>
    public Child StartOn(Network.LabHost host, string name, IEnumerable<string> arguments, Func<string, bool>? onLine = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        return StartIn(host, name, arguments, onLine);
    }

    private Child StartIn(Network.LabHost? host, string name, IEnumerable<string> arguments, Func<string, bool>? onLine)
    {
        var process = Spawn(arguments, host);
        var child = new Child(name, process);
        _children.Add(child);
        _pumps.Add(Pump(process.StandardOutput, name, Console.Out, onLine));
        _pumps.Add(Pump(process.StandardError, name, Console.Error, null));
        return child;
    }

    /// <summary>
    /// Waits until every child exited, or until one fails (non-zero exit) or <paramref name="ct"/> is cancelled;
    /// then stops the rest. Returns the first failure and the exit code it maps to, or null when all succeeded.
    /// </summary>
    public async Task<(string Failure, int Code)?> WaitAllAsync(CancellationToken ct)
    {
        using var failed = new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, failed.Token);
        (string, int)? failure = null;
        var exits = _children.Select(async child =>
        {
            await child.Process.WaitForExitAsync(CancellationToken.None);
            if (child.Process.ExitCode != 0 && !linked.IsCancellationRequested)
            {
                lock (Output)
                {
                    failure ??= ($"{child.Name} exited with code {child.Process.ExitCode}", child.Process.ExitCode is ExitCodes.Network or ExitCodes.Usage ? child.Process.ExitCode : ExitCodes.Failed);
                }
                await failed.CancelAsync();
            }
        }).ToList();
        var all = Task.WhenAll(exits);
        await Task.WhenAny(all, Task.Delay(Timeout.Infinite, linked.Token));
        if (linked.IsCancellationRequested)
        {
            Kill();
            await all.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
        }
        return failure;
    }

    /// <summary>Lets the pumps print what the children wrote last (their result lines).</summary>
    public async Task DrainAsync()
    {
        await Task.WhenAny(Task.WhenAll(_pumps), Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
        await Console.Out.FlushAsync(CancellationToken.None);
    }

    /// <summary>Kills every child still running (with its process tree).</summary>
    public void Kill()
    {
        foreach (var child in _children)
        {
            try
            {
                if (!child.Process.HasExited)
                {
                    child.Process.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
            }
        }
    }

    /// <summary>Kills every child still running.</summary>
    public void Dispose() => Kill();

    private static Process Spawn(IEnumerable<string> arguments, Network.LabHost? host)
    {
        var (file, prefix) = Self();
        if (host is not null)
        {
            (file, prefix) = Network.NetworkLab.Wrap(host, file, prefix);
        }
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // closed when we die: the child exits (ParentWatch)
            UseShellExecute = false,
        };
        foreach (var a in prefix.Concat(arguments))
        {
            info.ArgumentList.Add(a);
        }
        info.Environment[ParentWatch.Variable] = "1";
        if (!Settings.Get(PsOptions.Insecure.Name, false)) // --insecure: a local job without authentication (to measure what it costs)
        {
            info.Environment[Transport.JobSecret.Variable] = Transport.JobSecret.EnsureForLocalJob(); // the job's members, and only they, hold it
        }
        info.Environment[ProgressEvents.Variable] = "1";
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
    }

    /// <summary>How to run this same pserver again: the apphost, or `dotnet pserver.dll`.</summary>
    private static (string File, string[] Prefix) Self()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string name = Path.GetFileNameWithoutExtension(process);
        if (name.Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            return (process, [Assembly.GetEntryAssembly()!.Location]);
        }
        return (process, []);
    }

    private async Task Pump(StreamReader reader, string name, TextWriter target, Func<string, bool>? onLine)
    {
        string prefix = $"[{name}] ";
        while (await reader.ReadLineAsync() is { } line)
        {
            if (onLine is not null && !onLine(line))
            {
                continue;
            }
            lock (Output)
            {
                target.WriteLine(prefix + line);
            }
        }
    }
}
