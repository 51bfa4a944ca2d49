using System.Diagnostics;
using System.Globalization;

namespace ParameterServer.Hosting.Network;

/// <summary>
/// A private network on one machine, for gray-failure tests and link-limited benchmarks: one network namespace per host, each with its own address on
/// 10.213.N.0/24, joined by veth pairs to a bridge that lives in a namespace of its own. Nothing is added to the
/// machine's own namespace, so deleting the lab's namespaces removes all of it; a lab left by a killed test run is
/// deleted by the next one (the namespace names carry the owning process id). Faults: a host's link down or up, a
/// one-way drop (nft in the sender's namespace), a slow link (tbf rate, netem delay where the kernel has it, random loss
/// by nft). Needs root and iproute2 (nftables for drops and loss).
/// </summary>
public sealed class NetworkLab : IDisposable
{
    private const string Prefix = "pslab-";
    private static int _labs;
    private readonly string _switch;
    private bool _disposed;

    private NetworkLab(string name, int hosts, int subnet)
    {
        Name = name;
        _switch = $"{name}-sw";
        Hosts = Enumerable.Range(0, hosts).Select(i => new LabHost($"{name}-h{i}", $"10.213.{subnet}.{i + 1}", $"h{i}")).ToArray();
    }

    public string Name { get; }

    public IReadOnlyList<LabHost> Hosts { get; }

    /// <summary>Why labs cannot be made here (not root, no `ip netns`), or null when they can.</summary>
    public static string? Unavailable { get; } = Probe();

    /// <summary>Whether the kernel has the netem queueing discipline (delay); without it a slow link is rate and loss only.</summary>
    public static bool HasNetem { get; } = Unavailable is null && ProbeNetem();

    /// <summary>Makes a lab of <paramref name="hosts"/> hosts, after deleting labs whose test process is gone.</summary>
    public static NetworkLab Create(int hosts)
    {
        if (Unavailable is { } why)
        {
            throw new InvalidOperationException($"network labs need root and iproute2: {why}");
        }
        DeleteOrphans();
        int n = Interlocked.Increment(ref _labs);
        var lab = new NetworkLab($"{Prefix}{Environment.ProcessId}-{n}", hosts, (Environment.ProcessId + n) % 250 + 1);
        try
        {
            lab.Build();
        }
        catch
        {
            lab.Dispose();
            throw;
        }
        return lab;
    }

    private void Build()
    {
        Ip($"netns add {_switch}");
        Ip($"-n {_switch} link add br0 type bridge");
        Ip($"-n {_switch} link set br0 up");
        foreach (var host in Hosts)
        {
            Ip($"netns add {host.Namespace}");
            Ip($"-n {host.Namespace} link set lo up");
            Ip($"-n {host.Namespace} link add eth0 type veth peer name {host.SwitchPort} netns {_switch}");
            Ip($"-n {host.Namespace} addr add {host.Address}/24 dev eth0");
            Ip($"-n {host.Namespace} link set eth0 up");
            Ip($"-n {_switch} link set {host.SwitchPort} master br0");
            Ip($"-n {_switch} link set {host.SwitchPort} up");
        }
    }

    /// <summary>Cuts <paramref name="host"/> off (its switch port down: nothing in or out), or heals it.</summary>
    public void SetLink(LabHost host, bool up) => Ip($"-n {_switch} link set {host.SwitchPort} {(up ? "up" : "down")}");

    /// <summary>Drops every packet <paramref name="from"/> sends to <paramref name="to"/> (one way: the other direction still flows).</summary>
    public void DropOneWay(LabHost from, LabHost to)
    {
        Nft(from, "add table inet pslab");
        Nft(from, "add chain inet pslab out { type filter hook output priority 0 ; }");
        Nft(from, $"add rule inet pslab out ip daddr {to.Address} drop");
    }

    /// <summary>
    /// Makes <paramref name="host"/>'s link slow both ways: <paramref name="delayMs"/> one-way delay where the kernel has
    /// netem (<see cref="HasNetem"/>), at most <paramref name="megabits"/> Mbit/s (tbf), and <paramref name="lossPercent"/>
    /// of its packets dropped at random, in and out. Returns what was applied, for the test's report.
    /// </summary>
    public string Slow(LabHost host, int delayMs, int megabits, double lossPercent)
    {
        string applied;
        if (HasNetem)
        {
            Ip($"-n {host.Namespace} link set eth0 txqueuelen 10000");
            Tc($"-n {host.Namespace} qdisc add dev eth0 root netem delay {delayMs}ms rate {megabits}mbit limit 100000");
            Tc($"-n {_switch} qdisc add dev {host.SwitchPort} root netem delay {delayMs}ms rate {megabits}mbit limit 100000");
            applied = $"{delayMs} ms delay each way, {megabits} Mbit/s";
        }
        else
        {
            Tc($"-n {host.Namespace} qdisc add dev eth0 root tbf rate {megabits}mbit burst 64kb latency {Math.Max(delayMs, 50)}ms");
            Tc($"-n {_switch} qdisc add dev {host.SwitchPort} root tbf rate {megabits}mbit burst 64kb latency {Math.Max(delayMs, 50)}ms");
            applied = $"{megabits} Mbit/s (this kernel has no netem: no added delay)";
        }
        if (lossPercent > 0)
        {
            // nft's numgen draws 0..9999 per packet: below the threshold, drop.
            int threshold = (int)Math.Round(lossPercent * 100, MidpointRounding.AwayFromZero);
            Nft(host, "add table inet pslab");
            Nft(host, "add chain inet pslab out { type filter hook output priority 0 ; }");
            Nft(host, "add chain inet pslab in { type filter hook input priority 0 ; }");
            Nft(host, $"add rule inet pslab out meta iifname != lo numgen random mod 10000 < {threshold} drop");
            Nft(host, $"add rule inet pslab in meta iifname != lo numgen random mod 10000 < {threshold} drop");
            applied += string.Create(CultureInfo.InvariantCulture, $", {lossPercent}% loss each way");
        }
        return applied;
    }

    /// <summary>The command line that runs <paramref name="program"/> inside <paramref name="host"/>'s namespace.</summary>
    public static (string FileName, string[] Arguments) Wrap(LabHost host, string program, IEnumerable<string> arguments) =>
        ("ip", ["netns", "exec", host.Namespace, program, .. arguments]);

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var ns in Hosts.Select(h => h.Namespace).Append(_switch))
        {
            Run("ip", $"netns delete {ns}", check: false);
        }
    }

    /// <summary>Deletes the namespaces of labs whose test process has exited (a run that was killed cannot clean up).</summary>
    private static void DeleteOrphans()
    {
        var (_, output) = Run("ip", "netns list", check: false);
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string ns = line.Split(' ')[0];
            if (!ns.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }
            string[] parts = ns[Prefix.Length..].Split('-');
            if (parts.Length > 0 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out int pid) && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
            {
                Run("ip", $"netns delete {ns}", check: false);
            }
        }
    }

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "not Linux";
        }
        if (Environment.UserName != "root")
        {
            return $"running as {Environment.UserName}, not root";
        }
        string probe = $"{Prefix}{Environment.ProcessId}-probe";
        try
        {
            var (code, output) = Run("ip", $"netns add {probe}", check: false);
            if (code != 0)
            {
                return $"`ip netns add` failed: {output.Trim()}";
            }
            Run("ip", $"netns delete {probe}", check: false);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return $"no `ip` command ({ex.Message}): apt-get install iproute2";
        }
        try
        {
            Run("nft", "--version");
            return null;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return $"no `nft` command ({ex.Message}): apt-get install nftables";
        }
    }

    private static bool ProbeNetem()
    {
        string probe = $"{Prefix}{Environment.ProcessId}-netem";
        try
        {
            Run("ip", $"netns add {probe}");
            return Run("tc", $"-n {probe} qdisc add dev lo root netem delay 1ms", check: false).Code == 0;
        }
        finally
        {
            Run("ip", $"netns delete {probe}", check: false);
        }
    }

    private static void Ip(string arguments) => Run("ip", arguments);

    private static void Tc(string arguments) => Run("tc", arguments);

    private static void Nft(LabHost host, string rule) => Run("ip", $"netns exec {host.Namespace} nft {rule}");

    private static (int Code, string Output) Run(string program, string arguments, bool check = true)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Arguments split on spaces, except inside braces (nft chain specs) which stay one argument.
        foreach (string argument in SplitArguments(arguments))
        {
            info.ArgumentList.Add(argument);
        }
        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        if (!process.WaitForExit(10_000))
        {
            process.Kill();
            throw new InvalidOperationException($"`{program} {arguments}` did not finish within 10 s");
        }
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{program} {arguments}` failed ({process.ExitCode}): {output.Trim()}");
        }
        return (process.ExitCode, output);
    }

    private static IEnumerable<string> SplitArguments(string arguments)
    {
        int depth = 0;
        var current = new System.Text.StringBuilder();
        foreach (char c in arguments)
        {
            depth += c == '{' ? 1 : c == '}' ? -1 : 0;
            if (c == ' ' && depth == 0)
            {
                if (current.Length > 0)
                {
                    yield return current.ToString();
                    current.Clear();
                }
                continue;
            }
            current.Append(c);
        }
        if (current.Length > 0)
        {
            yield return current.ToString();
        }
    }
}

/// <summary>One host of a <see cref="NetworkLab"/>: its namespace, its address, and its port on the lab's bridge.</summary>
public sealed record LabHost(string Namespace, string Address, string SwitchPort);
