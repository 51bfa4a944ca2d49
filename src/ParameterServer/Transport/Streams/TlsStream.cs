using System.Net.Security;
using System.Security.Authentication;

namespace ParameterServer.Transport.Streams;

/// <summary>
/// TLS over another connection stream (<see cref="SslStream"/>), as a decorator: the connection above it is the
/// same. Partial and timed writes are not offered (a TLS record is all or nothing), so large answers take the
/// copying path; one reader and one writer may run at once, as <see cref="SslStream"/> allows.
/// </summary>
internal sealed class TlsStream : IConnectionStream
{
    private readonly IConnectionStream _inner;
    private readonly SslStream _ssl;

    private TlsStream(IConnectionStream inner)
    {
        _inner = inner;
        _ssl = new SslStream(new InnerStream(inner), leaveInnerStreamOpen: false);
    }

    /// <summary>
    /// Wraps a stream this node opened to <paramref name="peer"/> at <paramref name="host"/>, completing the TLS
    /// handshake within <paramref name="timeout"/>; throws <see cref="TransportException"/> saying what failed.
    /// The inner stream is disposed on failure.
    /// </summary>
    public static TlsStream Connect(IConnectionStream inner, TlsOptions tls, string host, TimeSpan timeout, string peer)
    {
        var stream = new TlsStream(inner);
        string? rejected = null;
        stream.Authenticate(timeout, peer, () => stream._ssl.AuthenticateAsClient(tls.ClientOptions(host, why => rejected = why)), () => rejected, connecting: true);
        return stream;
    }

    /// <summary>Wraps a stream this node accepted, completing the TLS handshake within <paramref name="timeout"/>.</summary>
    public static TlsStream Accept(IConnectionStream inner, TlsOptions tls, TimeSpan timeout)
    {
        var stream = new TlsStream(inner);
        string? rejected = null;
        stream.Authenticate(timeout, inner.RemoteAddress ?? "a peer", () => stream._ssl.AuthenticateAsServer(tls.ServerOptions(why => rejected = why)), () => rejected, connecting: false);
        return stream;
    }

    private void Authenticate(TimeSpan timeout, string peer, Action handshake, Func<string?> rejected, bool connecting)
    {
        using var deadline = new HandshakeDeadline(_inner, timeout);
        try
        {
            handshake();
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException or TimeoutException)
        {
            Dispose();
            string why = deadline.Expired ? $"it did not complete within {timeout.TotalSeconds:0.#} s (a slow or stuck peer)"
                : rejected() is { } reason ? reason
                : connecting ? $"{ex.Message} (does it run with TLS, the same --tls-ca, and accept this node's certificate?)"
                : $"{ex.Message} (does it run with --tls and a certificate from the same CA?)";
            throw new TransportException($"TLS with {peer} failed: {why}", ex) { IsAuthentication = rejected() is not null };
        }
    }

    public string? RemoteAddress => _inner.RemoteAddress;

    public bool SupportsPartialWrites => false;

    public TimeSpan WriteStallTimeout
    {
        get => _inner.WriteStallTimeout;
        set => _inner.WriteStallTimeout = value;
    }

    public bool BytesWaiting => true; // decrypted bytes may wait inside SslStream: read at once

    public int Read(Span<byte> buffer) => _ssl.Read(buffer);

    public void Write(ReadOnlySpan<byte> data) => _ssl.Write(data);

    public void WriteAll(ReadOnlySpan<byte> data, bool more) => _ssl.Write(data);

    public int TryWriteNow(ReadOnlySpan<byte> data) => 0;

    public int WriteUntil(ReadOnlySpan<byte> data, long deadline) => 0;

    public void Shutdown() => _inner.Shutdown();

    public void Dispose() => _ssl.Dispose();

    /// <summary>The inner connection stream as the <see cref="Stream"/> SslStream reads and writes records through.</summary>
    private sealed class InnerStream(IConnectionStream inner) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer) => inner.Read(buffer);

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
