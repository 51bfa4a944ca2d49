using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ParameterServer.Transport;

/// <summary>
/// <c>send(2)</c> with the flags .NET's Socket does not expose: MSG_DONTWAIT (take what fits now, never block: used while
/// a store lock is held) and MSG_MORE (a frame's head waits for its body instead of leaving as its own packet).
/// Linux only; elsewhere <see cref="IsSupported"/> is false and callers take the copying path.
/// </summary>
internal static partial class NativeSend
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int MsgMore = 0x8000;
    private const int EIntr = 4;
    private const int EAgain = 11;

    public static bool IsSupported { get; } = OperatingSystem.IsLinux();

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static unsafe partial nint Send(int fd, byte* buffer, nint length, int flags);

    /// <summary>Sends as much as the kernel takes without blocking; 0 when the socket buffer is full.</summary>
    public static int TrySendNow(Socket socket, ReadOnlySpan<byte> data) => Invoke(socket, data, MsgDontWait | MsgNoSignal);

    /// <summary>Sends all of <paramref name="data"/>, blocking; with <paramref name="more"/> the kernel holds a partial packet for what follows.</summary>
    public static void SendAll(Socket socket, ReadOnlySpan<byte> data, bool more)
    {
        int flags = MsgNoSignal | (more ? MsgMore : 0);
        while (!data.IsEmpty)
        {
            data = data[Invoke(socket, data, flags)..];
        }
    }

    private static unsafe int Invoke(Socket socket, ReadOnlySpan<byte> data, int flags)
    {
        if (data.IsEmpty)
        {
            return 0;
        }
        var handle = socket.SafeHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added); // the descriptor cannot be closed (and reused) under the call
            int fd = (int)handle.DangerousGetHandle();
            fixed (byte* p = data)
            {
                while (true)
                {
                    nint sent = Send(fd, p, data.Length, flags);
                    if (sent >= 0)
                    {
                        return (int)sent;
                    }
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EIntr)
                    {
                        continue;
                    }
                    if (errno == EAgain && (flags & MsgDontWait) != 0)
                    {
                        return 0;
                    }
                    throw new SocketException(errno == 32 /* EPIPE */ ? (int)SocketError.Shutdown : (int)SocketError.SocketError);
                }
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }
}
