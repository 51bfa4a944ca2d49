using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using ParameterServer.Protocol;
using ParameterServer.Transport.Streams;

namespace ParameterServer.Transport;

/// <summary>
/// Mutual challenge-response on a new connection, before any frame: both ends prove they hold the job's secret with
/// HMAC-SHA256 over fresh nonces from both sides, so the secret never crosses the wire and a recorded exchange
/// cannot be replayed (the other side's nonce is new every time). The connecting side also states its role, which
/// the MACs cover: the accepting side learns an authenticated role.
/// </summary>
/// <remarks>
/// hello (connecting side, 41 bytes): "PSAUTH01", role, nonce Nc (32).
/// challenge (accepting side, 72 bytes): "PSAUTH01", nonce Ns (32), HMAC(K, "ps-server" | role | Nc | Ns).
/// proof (connecting side, 32 bytes): HMAC(K, "ps-client" | role | Nc | Ns).
/// verdict (accepting side, 1 byte): 1 accepted; on 0 the connection closes.
/// The two labels differ, so neither side's MAC can stand in for the other's (no reflection).
/// </remarks>
internal static class Handshake
{
    private const int NonceBytes = 32;
    private const int MacBytes = 32;
    private static readonly byte[] Magic = "PSAUTH01"u8.ToArray();
    private static readonly byte[] ServerLabel = Encoding.ASCII.GetBytes("ps-server");
    private static readonly byte[] ClientLabel = Encoding.ASCII.GetBytes("ps-client");

    /// <summary>Bytes of the connecting side's first message.</summary>
    public const int HelloBytes = 8 + 1 + NonceBytes;

    /// <summary>
    /// The connecting side: proves <paramref name="secret"/> as <paramref name="role"/> and checks that the peer
    /// holds it too, within <paramref name="timeout"/>; throws <see cref="TransportException"/> saying what failed.
    /// </summary>
    public static void Connect(IConnectionStream stream, byte[] secret, NodeRole role, TimeSpan timeout, string peer)
    {
        using var deadline = Deadline(stream, timeout);
        Span<byte> hello = stackalloc byte[HelloBytes];
        Magic.CopyTo(hello);
        hello[8] = (byte)role;
        var nc = hello.Slice(9, NonceBytes);
        RandomNumberGenerator.Fill(nc);
        Span<byte> challenge = stackalloc byte[8 + NonceBytes + MacBytes];
        try
        {
            stream.Write(hello);
            if (!ReadExactly(stream, challenge))
            {
                throw Refused(peer, $"{peer} closed the connection instead of answering the authentication hello: does it run with the same --secret-file (or PS_SECRET_FILE)?", deadline);
            }
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or TimeoutException)
        {
            throw Refused(peer, $"authenticating with {peer} failed: {ex.Message}", deadline);
        }
        if (!challenge[..8].SequenceEqual(Magic))
        {
            throw new TransportException($"{peer} did not answer with an authentication challenge: it runs without --secret-file, or is not a pserver node") { IsAuthentication = true };
        }
        var ns = challenge.Slice(8, NonceBytes);
        Span<byte> expected = stackalloc byte[MacBytes];
        Mac(secret, ServerLabel, role, nc, ns, expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, challenge.Slice(8 + NonceBytes, MacBytes)))
        {
            throw new TransportException($"{peer} does not hold this job's secret (its proof did not match): check that every node uses the same --secret-file") { IsAuthentication = true };
        }
        Span<byte> proof = stackalloc byte[MacBytes];
        Mac(secret, ClientLabel, role, nc, ns, proof);
        Span<byte> verdict = stackalloc byte[1];
        try
        {
            stream.Write(proof);
            if (!ReadExactly(stream, verdict) || verdict[0] != 1)
            {
                throw new TransportException($"{peer} refused this node's proof of the job's secret: check that every node uses the same --secret-file") { IsAuthentication = true };
            }
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or TimeoutException)
        {
            throw Refused(peer, $"authenticating with {peer} failed after the challenge: {ex.Message}", deadline);
        }
    }

    /// <summary>
    /// The accepting side: the peer's authenticated role, or throws <see cref="TransportException"/> saying why the
    /// peer was refused (the caller closes the stream, logs and counts it).
    /// </summary>
    public static NodeRole Accept(IConnectionStream stream, byte[] secret, TimeSpan timeout)
    {
        string peer = stream.RemoteAddress ?? "a peer";
        using var deadline = Deadline(stream, timeout);
        Span<byte> hello = stackalloc byte[HelloBytes];
        try
        {
            if (!ReadExactly(stream, hello))
            {
                throw new TransportException($"{peer} closed the connection before its authentication hello");
            }
            if (!hello[..8].SequenceEqual(Magic))
            {
                throw new TransportException($"{peer} sent no authentication hello (started without --secret-file, or not a pserver node)");
            }
            var role = (NodeRole)hello[8];
            if (!Enum.IsDefined(role))
            {
                throw new TransportException($"{peer} claimed unknown role {hello[8]}");
            }
            var nc = hello.Slice(9, NonceBytes);
            byte[] key = role == NodeRole.Reader ? JobSecret.ReadTokenOf(secret) : secret; // a reader proves the token derived from the secret
            Span<byte> challenge = stackalloc byte[8 + NonceBytes + MacBytes];
            Magic.CopyTo(challenge);
            var ns = challenge.Slice(8, NonceBytes);
            RandomNumberGenerator.Fill(ns);
            Mac(key, ServerLabel, role, nc, ns, challenge.Slice(8 + NonceBytes, MacBytes));
            stream.Write(challenge);
            Span<byte> proof = stackalloc byte[MacBytes];
            if (!ReadExactly(stream, proof))
            {
                throw new TransportException($"{peer} closed the connection instead of proving the job's secret (it does not hold the same one)");
            }
            Span<byte> expected = stackalloc byte[MacBytes];
            Mac(key, ClientLabel, role, nc, ns, expected);
            bool ok = CryptographicOperations.FixedTimeEquals(expected, proof);
            stream.Write([ok ? (byte)1 : (byte)0]);
            if (!ok)
            {
                throw new TransportException($"{peer} (claiming to be a {role.ToString().ToLowerInvariant()}) does not hold this job's secret: wrong --secret-file, or a replayed handshake");
            }
            return role;
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or TimeoutException)
        {
            throw Refused(peer, $"{peer} broke off its authentication: {ex.Message}", deadline);
        }
    }

    private static TransportException Refused(string peer, string message, HandshakeDeadline deadline) =>
        deadline.Expired ? new TransportException($"authentication with {peer} did not complete within {deadline.Timeout.TotalSeconds:0.#} s (a slow or stuck peer)") : new TransportException(message);

    private static void Mac(byte[] secret, byte[] label, NodeRole role, ReadOnlySpan<byte> nc, ReadOnlySpan<byte> ns, Span<byte> mac)
    {
        Span<byte> message = stackalloc byte[label.Length + 1 + NonceBytes + NonceBytes];
        label.CopyTo(message);
        message[label.Length] = (byte)role;
        nc.CopyTo(message[(label.Length + 1)..]);
        ns.CopyTo(message[(label.Length + 1 + NonceBytes)..]);
        HMACSHA256.HashData(secret, message, mac);
    }

    /// <summary>Reads exactly buffer.Length bytes; false when the peer closed first.</summary>
    private static bool ReadExactly(IConnectionStream stream, Span<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            int n = stream.Read(buffer);
            if (n <= 0)
            {
                return false;
            }
            buffer = buffer[n..];
        }
        return true;
    }

    private static HandshakeDeadline Deadline(IConnectionStream stream, TimeSpan timeout) => new(stream, timeout);
}

/// <summary>Shuts a stream down when its handshake (TLS or the secret's) overruns: blocked reads and writes return.</summary>
internal sealed class HandshakeDeadline : IDisposable
{
    private readonly Timer _timer;
    private readonly long _start = Stopwatch.GetTimestamp();
    private volatile bool _expired;

    public HandshakeDeadline(IConnectionStream stream, TimeSpan timeout)
    {
        Timeout = timeout;
        _timer = new Timer(_ =>
        {
            _expired = true;
            stream.Shutdown();
        }, null, timeout, System.Threading.Timeout.InfiniteTimeSpan);
    }

    public TimeSpan Timeout { get; }

    public bool Expired => _expired || Stopwatch.GetElapsedTime(_start) >= Timeout;

    public void Dispose() => _timer.Dispose();
}
