using System.Diagnostics;
using System.Net.Sockets;

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

    public static async Task<EtcdServer> StartAsync()
    {
        string data = Directory.CreateTempSubdirectory("ps-etcd-").FullName;
        int client = Ports.Free(), peer = Ports.Free();
        var info = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[]
        {
            "--name", "test", "--data-dir", data,
            "--listen-client-urls", $"http://127.0.0.1:{client}", "--advertise-client-urls", $"http://127.0.0.1:{client}",
            "--listen-peer-urls", $"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{peer}",
            "--initial-cluster", $"test=http://127.0.0.1:{peer}",
        })
        {
            info.ArgumentList.Add(a);
        }
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new EtcdServer(process, data, $"http://127.0.0.1:{client}");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", client);
                return server;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                await Task.Delay(100);
            }
            catch
            {
                server.Dispose();
                throw new InvalidOperationException($"etcd did not listen on 127.0.0.1:{client} within 20 s");
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
