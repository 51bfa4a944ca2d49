using System.Diagnostics;
using ParameterServer.Client;
using ParameterServer.Scheduler;
using ParameterServer.Server;

namespace ParameterServer.Hosting.Planning;

/// <summary>The link `pserver plan` assumes when none is given: this machine's parameter-server data path, measured.</summary>
public static class DataPath
{
    /// <summary>
    /// The parameter server's own data path between two processes of this machine: a scheduler, a server and a worker
    /// in this process over loopback TCP, the worker pulling and pushing the model's bytes (up to 128 MB) five times.
    /// Returns bytes per second one way: 2 x bytes / (median pull + median push).
    /// </summary>
    public static async Task<double> MeasureAsync(long modelBytes, CancellationToken ct)
    {
        const int Width = 64;
        long rows = Math.Clamp(modelBytes / 4 / Width, 1024, (128L << 20) / 4 / Width);
        await using var scheduler = SchedulerNode.Start(new SchedulerOptions { Port = 0, Servers = 1, Workers = 1 });
        string address = $"127.0.0.1:{scheduler.Port}";
        await using var server = await ServerNode.StartAsync(new ServerOptions { Scheduler = address }, cancellationToken: ct);
        await using var client = await PsClient.ConnectAsync(new WorkerOptions { Scheduler = address }, cancellationToken: ct);
        var table = await client.DeclareTableAsync(new TableSpec("plan.probe", Width) { DenseSize = (ulong)rows }, ct);
        var values = new float[rows * Width];
        var pulls = new List<double>();
        var pushes = new List<double>();
        for (int i = 0; i < 6; i++)
        {
            long start = Stopwatch.GetTimestamp();
            await client.WaitAsync(table.PushRange(0, values), ct);
            double push = Stopwatch.GetElapsedTime(start).TotalSeconds;
            start = Stopwatch.GetTimestamp();
            await client.WaitAsync(table.PullRange(0, values), ct);
            double pull = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (i > 0) // the first round warms up
            {
                pushes.Add(push);
                pulls.Add(pull);
            }
        }
        double Median(List<double> times) => times.Order().ElementAt(times.Count / 2);
        return 2.0 * values.Length * 4 / (Median(pulls) + Median(pushes));
    }
}
