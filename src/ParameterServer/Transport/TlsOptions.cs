using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ParameterServer.Transport;

/// <summary>
/// TLS on every connection of a node (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-client-certs`, or the PS_TLS_*
/// variables children inherit): the node presents its certificate both when it accepts and when it connects, and
/// accepts a peer whose certificate chains to the trusted certificate authority. Peers are addressed by IP and port
/// given at run time, so host names in certificates are not checked: trust comes from the job's own CA (and the job
/// secret's handshake still runs inside the encrypted channel).
/// </summary>
public sealed class TlsOptions
{
    /// <summary>The environment variable naming the certificate file (PEM).</summary>
    public const string CertificateVariable = "PS_TLS_CERT";

    /// <summary>The environment variable naming the private key file (PEM).</summary>
    public const string KeyVariable = "PS_TLS_KEY";

    /// <summary>The environment variable naming the trusted CA certificate file (PEM); the certificate itself when unset.</summary>
    public const string CaVariable = "PS_TLS_CA";

    /// <summary>The environment variable that makes accepting nodes require a client certificate ("true").</summary>
    public const string ClientCertificatesVariable = "PS_TLS_CLIENT_CERTS";

    private readonly X509Certificate2 _certificate;
    private readonly X509Certificate2Collection _trusted;
    private readonly SslStreamCertificateContext _serverContext;

    private TlsOptions(X509Certificate2 certificate, X509Certificate2Collection trusted, bool requireClientCertificate, string description)
    {
        _certificate = certificate;
        _trusted = trusted;
        RequireClientCertificate = requireClientCertificate;
        _serverContext = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
        Description = description;
    }

    /// <summary>Whether an accepting node refuses peers that present no certificate (mutual TLS).</summary>
    public bool RequireClientCertificate { get; }

    /// <summary>The certificate's subject and where it came from, for logs.</summary>
    public string Description { get; }

    /// <summary>
    /// Loads a certificate and its key (PEM files; the key may be in the certificate file) and the CA certificates
    /// peers must chain to (<paramref name="caFile"/>; null: the certificate itself, as with one self-signed job
    /// certificate from <c>pserver tls-cert</c>). Throws <see cref="ArgumentException"/> saying which file is wrong.
    /// </summary>
    public static TlsOptions Load(string certificateFile, string? keyFile, string? caFile, bool requireClientCertificate)
    {
        ArgumentNullException.ThrowIfNull(certificateFile);
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new ArgumentException($"cannot load the TLS certificate '{certificateFile}' with key '{keyFile ?? certificateFile}': {ex.Message} (PEM files, as `pserver tls-cert --out DIR` writes)", ex);
        }
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException($"the TLS certificate '{certificateFile}' comes without its private key: give --tls-key");
        }
        var trusted = new X509Certificate2Collection();
        string ca = caFile ?? certificateFile;
        try
        {
            trusted.ImportFromPemFile(ca);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new ArgumentException($"cannot load the trusted CA certificates '{ca}' (--tls-ca): {ex.Message}", ex);
        }
        if (trusted.Count == 0)
        {
            throw new ArgumentException($"'{ca}' (--tls-ca) holds no PEM certificate");
        }
        return new TlsOptions(certificate, trusted, requireClientCertificate, $"{certificate.Subject} from {certificateFile}, trusting {ca}");
    }

    /// <summary>TLS from <see cref="CertificateVariable"/> and friends, or null when no certificate is named.</summary>
    public static TlsOptions? FromEnvironment()
    {
        if (Environment.GetEnvironmentVariable(CertificateVariable) is not { Length: > 0 } certificate)
        {
            return null;
        }
        return Load(
            certificate,
            Environment.GetEnvironmentVariable(KeyVariable) is { Length: > 0 } key ? key : null,
            Environment.GetEnvironmentVariable(CaVariable) is { Length: > 0 } ca ? ca : null,
            Environment.GetEnvironmentVariable(ClientCertificatesVariable) is { } require && require.Equals("true", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// Writes a new self-signed job certificate (ECDSA P-256, valid for <paramref name="days"/> days) and its key
    /// (readable by its owner only) as PEM: give both to every node; it is its own CA.
    /// </summary>
    public static void Generate(string certificateFile, string keyFile, int days = 365)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=pserver job", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("pserver");
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(days));
        JobSecret.WritePrivate(keyFile, key.ExportPkcs8PrivateKeyPem() + "\n");
        File.WriteAllText(certificateFile, certificate.ExportCertificatePem() + "\n");
    }

    /// <summary>
    /// For a job this process starts on its own with `--tls` and no certificate: makes a throwaway job certificate in
    /// a private temporary folder (removed when the process exits) and names it in the variables children inherit.
    /// </summary>
    public static void EnsureForLocalJob()
    {
        lock (s_localLock)
        {
            if (Environment.GetEnvironmentVariable(CertificateVariable) is { Length: > 0 })
            {
                return;
            }
            var dir = Directory.CreateTempSubdirectory("pserver-tls-");
            string certificate = Path.Combine(dir.FullName, "job.crt");
            string key = Path.Combine(dir.FullName, "job.key");
            Generate(certificate, key, days: 7);
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                try
                {
                    dir.Delete(recursive: true);
                }
                catch (IOException)
                {
                }
            };
            Environment.SetEnvironmentVariable(CertificateVariable, certificate);
            Environment.SetEnvironmentVariable(KeyVariable, key);
        }
    }

    private static readonly Lock s_localLock = new();

    internal SslClientAuthenticationOptions ClientOptions(string host, Action<string> rejected) => new()
    {
        TargetHost = host,
        ClientCertificates = [_certificate],
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => Check(certificate, required: true, rejected),
    };

    internal SslServerAuthenticationOptions ServerOptions(Action<string> rejected) => new()
    {
        ServerCertificateContext = _serverContext,
        ClientCertificateRequired = RequireClientCertificate,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => Check(certificate, RequireClientCertificate, rejected),
    };

    /// <summary>Whether the peer's certificate chains to a trusted CA (names are not checked: peers are dialled by address).</summary>
    private bool Check(X509Certificate? presented, bool required, Action<string> rejected)
    {
        if (presented is null)
        {
            if (required)
            {
                rejected("it presented no certificate");
            }
            return !required;
        }
        var certificate = presented as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain.Build(certificate))
        {
            return true;
        }
        string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
        rejected($"its certificate ({certificate.Subject}) does not chain to the trusted CA (--tls-ca): {status}");
        return false;
    }
}
