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

    private const short PollOut = 4;

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static unsafe partial nint Send(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "ppoll", SetLastError = true)]
    private static unsafe partial int PPoll(PollFd* fds, nuint count, TimeSpec* timeout, void* signals);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>Sends as much as the kernel takes without blocking; 0 when the socket buffer is full.</summary>
    public static int TrySendNow(Socket socket, ReadOnlySpan<byte> data) => Invoke(socket, data, MsgDontWait | MsgNoSignal);

    /// <summary>
    /// Sends without ever blocking past <paramref name="deadline"/> (a <see cref="System.Diagnostics.Stopwatch"/>
    /// timestamp): whenever the socket buffer is full it waits for room until then. Returns the bytes sent.
    /// </summary>
    public static unsafe int SendUntil(Socket socket, ReadOnlySpan<byte> data, long deadline)
    {
        int total = 0;
        while (true)
        {
            int sent = Invoke(socket, data[total..], MsgDontWait | MsgNoSignal);
            total += sent;
            if (total == data.Length)
            {
                return total;
            }
            long left = deadline - System.Diagnostics.Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                return total;
            }
            long nanos = (long)(left * (1e9 / System.Diagnostics.Stopwatch.Frequency));
            var timeout = new TimeSpec { Seconds = nanos / 1_000_000_000, Nanoseconds = nanos % 1_000_000_000 };
            var handle = socket.SafeHandle;
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                var fd = new PollFd { Fd = (int)handle.DangerousGetHandle(), Events = PollOut };
                PPoll(&fd, 1, &timeout, null); // EINTR or a timeout: the loop decides
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
                    if (errno == EAgain)
                    {
                        if ((flags & MsgDontWait) != 0)
                        {
                            return 0;
                        }
                        // A blocking send ends with EAGAIN only when SO_SNDTIMEO passed with no byte taken.
                        throw new TimeoutException($"the peer took no bytes for {socket.SendTimeout / 1000.0:0.#} s");
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
