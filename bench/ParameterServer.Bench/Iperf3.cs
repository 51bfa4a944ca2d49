using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace ParameterServer.Bench;

/// <summary>iperf3's one-stream loopback figure, when iperf3 is installed: a second opinion on the loopback limit.</summary>
internal static class Iperf3
{
    /// <summary>GB/s received over one TCP stream on 127.0.0.1, or null when iperf3 is not on the PATH or fails.</summary>
    public static async Task<double?> GbpsAsync(double seconds, CancellationToken ct)
    {
        string? path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "iperf3")).FirstOrDefault(File.Exists);
        if (path is null)
        {
            return null;
        }
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }
        using var server = Run(path, $"-s -1 -B 127.0.0.1 -p {port}");
        try
        {
            for (int attempt = 0; attempt < 20; attempt++)
            {
                await Task.Delay(100, ct);
                using var client = Run(path, $"-c 127.0.0.1 -p {port} -t {Math.Max(1, (int)Math.Ceiling(seconds))} -J");
                string output = await client.StandardOutput.ReadToEndAsync(ct);
                await client.WaitForExitAsync(ct);
                if (client.ExitCode == 0)
                {
                    using var doc = JsonDocument.Parse(output);
                    return doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bits_per_second").GetDouble() / 8e9;
                }
            }
            return null;
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
            }
        }
    }

    private static Process Run(string path, string arguments) => Process.Start(new ProcessStartInfo(path, arguments)
    {
        RedirectStandardOutput = true,
        RedirectStandardError = true,
        UseShellExecute = false,
    }) ?? throw new InvalidOperationException($"could not start {path}");
}
