using System.Security.Cryptography;

namespace ParameterServer.Transport;

/// <summary>
/// The job's shared secret as a file: made by <c>pserver secret</c> or <c>pserver local</c>, named by
/// <c>--secret-file</c> or the <see cref="Variable"/> environment variable, which
/// <see cref="TransportOptions.Secret"/> reads by default (child processes inherit it).
/// </summary>
public static class JobSecret
{
    /// <summary>The environment variable naming the secret file.</summary>
    public const string Variable = "PS_SECRET_FILE";

    /// <summary>The environment variable naming the read-only token file (tools that may only look).</summary>
    public const string TokenVariable = "PS_TOKEN_FILE";

    /// <summary>
    /// The job's read-only token: 64 hex digits derived from the secret (HMAC-SHA256 over a fixed label), so nodes
    /// need nothing more to accept it and it does not reveal the secret. It lets a tool ask for status and statistics
    /// over the job's port, and opens every HTTP endpoint (dashboard, /metrics): it changes nothing in the job.
    /// </summary>
    public static byte[] ReadTokenOf(byte[] secret)
    {
        ArgumentNullException.ThrowIfNull(secret);
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(secret, "pserver read-only token v1"u8, mac);
        return System.Text.Encoding.ASCII.GetBytes(Convert.ToHexStringLower(mac));
    }

    /// <summary>The read-only token in the file <see cref="TokenVariable"/> names, or null when it is unset.</summary>
    public static byte[]? TokenFromEnvironment() =>
        Environment.GetEnvironmentVariable(TokenVariable) is { Length: > 0 } path ? Read(path, $"{TokenVariable} names") : null;

    /// <summary>Writes <paramref name="secret"/>'s read-only token to <paramref name="path"/>, readable by its owner only.</summary>
    public static void WriteReadToken(byte[] secret, string path) => WritePrivate(path, System.Text.Encoding.ASCII.GetString(ReadTokenOf(secret)) + "\n");

    /// <summary>The secret in the file <see cref="Variable"/> names, or null when it is unset.</summary>
    public static byte[]? FromEnvironment() =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } path ? Read(path, $"{Variable} names") : null;

    /// <summary>The file's bytes without trailing white space; throws <see cref="ArgumentException"/> saying what is wrong.</summary>
    public static byte[] Read(string path) => Read(path, "--secret-file names");

    private static byte[] Read(string path, string source)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{source} the job secret file '{path}', which cannot be read: {ex.Message}", ex);
        }
        int length = bytes.Length;
        while (length > 0 && bytes[length - 1] is (byte)'\n' or (byte)'\r' or (byte)' ' or (byte)'\t')
        {
            length--;
        }
        if (length < TransportOptions.MinSecretBytes)
        {
            throw new ArgumentException($"{source} the job secret file '{path}', which holds {length} bytes; a secret needs at least {TransportOptions.MinSecretBytes} (make one with `pserver secret --out FILE`)");
        }
        return bytes[..length];
    }

    /// <summary>
    /// For a job this process starts on its own (`pserver local`, `train`, benchmarks): keeps the secret it was given,
    /// or makes one in a private temporary folder, removed when the process exits, and names it in
    /// <see cref="Variable"/> so that this process's tools and every child use it. Returns the file.
    /// </summary>
    public static string EnsureForLocalJob()
    {
        lock (s_localLock)
        {
            if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } given)
            {
                return given;
            }
            var dir = Directory.CreateTempSubdirectory("pserver-secret-");
            string path = Path.Combine(dir.FullName, "job-secret");
            Generate(path);
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
            Environment.SetEnvironmentVariable(Variable, path);
            return path;
        }
    }

    private static readonly Lock s_localLock = new();

    /// <summary>Writes a new random secret (32 bytes as 64 hex digits) readable by its owner only.</summary>
    public static void Generate(string path)
    {
        WritePrivate(path, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)) + "\n");
    }

    /// <summary>Writes a new file readable by its owner only (secrets, tokens, keys).</summary>
    internal static void WritePrivate(string path, string text)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using var file = new FileStream(path, options);
        file.Write(System.Text.Encoding.ASCII.GetBytes(text));
    }
}
