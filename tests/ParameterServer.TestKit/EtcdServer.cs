using System.Diagnostics;
using ParameterServer.Hosting.Network;

namespace ParameterServer.TestKit;

/// <summary>A real etcd (Debian's etcd-server) on free loopback ports with a throwaway data directory; disposing kills it and removes the directory.</summary>
internal sealed class EtcdServer : IDisposable
{
    public const string Binary = "/usr/bin/etcd";

    private readonly Process _process;
    private readonly string _data;

    private EtcdServer(Process process, string data, string endpoint)
    {
        _process = process;
        _data = data;
        Endpoint = endpoint;
    }

    /// <summary>http://127.0.0.1:PORT, for --etcd.</summary>
    public string Endpoint { get; }

    /// <summary>Why etcd cannot run here, or null when it can.</summary>
    public static string? Unavailable => File.Exists(Binary) ? null : $"needs etcd at {Binary} (apt-get install etcd-server)";

    /// <summary>
    /// Starts etcd on loopback, or on a <see cref="NetworkLab"/> host's address inside its namespace; on
    /// <paramref name="clientPort"/> when given, else on a free port.
    /// </summary>
    public static async Task<EtcdServer> StartAsync(LabHost? host = null, int? clientPort = null)
    {
        string data = Directory.CreateTempSubdirectory("ps-etcd-").FullName;
        string address = host?.Address ?? "127.0.0.1";
        int client = clientPort ?? Ports.Free(), peer = Ports.Free();
        string[] arguments =
        [
            "--name", "test", "--data-dir", data,
            "--listen-client-urls", $"http://{address}:{client}", "--advertise-client-urls", $"http://{address}:{client}",
            "--listen-peer-urls", $"http://{address}:{peer}", "--initial-advertise-peer-urls", $"http://{address}:{peer}",
            "--initial-cluster", $"test=http://{address}:{peer}",
        ];
        var (program, programArguments) = host is null ? (Binary, arguments) : NetworkLab.Wrap(host, Binary, arguments);
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in programArguments)
        {
            info.ArgumentList.Add(a);
        }
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new System.Text.StringBuilder();
        var process = new Process { StartInfo = info };
        DataReceivedEventHandler onLine = (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            lock (log)
            {
                log.AppendLine(e.Data);
            }
            if (e.Data.Contains("ready to serve client requests", StringComparison.Ordinal))
            {
                ready.TrySetResult();
            }
        };
        process.OutputDataReceived += onLine;
        process.ErrorDataReceived += onLine;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new EtcdServer(process, data, $"http://{address}:{client}");
        try
        {
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(20));
            return server;
        }
        catch (TimeoutException)
        {
            server.Dispose();
            lock (log)
            {
                throw new InvalidOperationException($"etcd did not become ready on {address}:{client} within 20 s:\n{log}");
            }
        }
    }

    public void Dispose()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        _process.Dispose();
        Directory.Delete(_data, recursive: true);
    }
}
