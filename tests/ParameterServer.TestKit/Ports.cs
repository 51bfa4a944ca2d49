using System.Net;
using System.Net.Sockets;

namespace ParameterServer.TestKit;

/// <summary>Ports for tests that must name one before anything listens on it.</summary>
internal static class Ports
{
    /// <summary>A port nothing listens on (a listener takes a free one and gives it back).</summary>
    public static int Free()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
