using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ParameterServer.Bench;

/// <summary>
/// The raw loopback limit the data plane is judged against: one TCP stream between two processes, a tight loop of
/// blocking <c>send</c> calls from one buffer on one side and blocking <c>recv</c> calls into one buffer on the other,
/// no framing, nothing touched in user space. The sink times from its first byte to the end of the stream.
/// </summary>
public static class LoopbackLimit
{
    /// <summary>
    /// Bytes per send and per receive call. On the 2-core machine of docs/PERFORMANCE.md 256 KiB with the kernel's
    /// own socket buffer sizing was fastest; 64 KiB, 1 MiB and 4 MiB chunks and fixed 1 or 4 MiB socket buffers were slower.
    /// </summary>
    public const int DefaultChunk = 256 << 10;

    public static Socket Listen(int port)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(1);
        return listener;
    }

    /// <summary>
    /// Accepts one connection and reads it to the end, <paramref name="chunk"/> bytes per call, cycling through a buffer
    /// of <paramref name="span"/> bytes (the chunk itself by default; a value's size to model values in cold memory).
    /// Returns the bytes and the seconds from first byte to end.
    /// </summary>
    public static (long Bytes, double Seconds) RunSink(Socket listener, int chunk, int span = 0)
    {
        using var socket = listener.Accept();
        var buffer = GC.AllocateUninitializedArray<byte>(Math.Max(chunk, span), pinned: true);
        long bytes = socket.Receive(buffer, 0, chunk, SocketFlags.None);
        long start = Stopwatch.GetTimestamp();
        int offset = 0;
        while (true)
        {
            int read = socket.Receive(buffer, offset, Math.Min(chunk, buffer.Length - offset), SocketFlags.None);
            if (read == 0)
            {
                break;
            }
            bytes += read;
            offset = offset + read == buffer.Length ? 0 : offset + read;
        }
        return (bytes, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    /// <summary>Connects and sends for <paramref name="seconds"/> (cycling through a buffer as the sink does), then closes the stream. Returns the bytes sent.</summary>
    public static long RunSource(string host, int port, double seconds, int chunk, int span = 0)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(new IPEndPoint(IPAddress.Parse(host), port));
        var buffer = GC.AllocateUninitializedArray<byte>(Math.Max(chunk, span), pinned: true);
        Random.Shared.NextBytes(buffer);
        long end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        long bytes = 0;
        int offset = 0;
        while (Stopwatch.GetTimestamp() < end)
        {
            int sent = socket.Send(buffer, offset, Math.Min(chunk, buffer.Length - offset), SocketFlags.None);
            bytes += sent;
            offset = offset + sent == buffer.Length ? 0 : offset + sent;
        }
        socket.Shutdown(SocketShutdown.Send);
        return bytes;
    }
}
