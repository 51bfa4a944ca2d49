using System.CommandLine;
using ParameterServer.Hosting;
using ParameterServer.Transport;

namespace ParameterServer.Cli;

/// <summary>`pserver secret --out FILE`: a new job secret for --secret-file / PS_SECRET_FILE; `pserver tls-cert --out DIR`: a job certificate for --tls-cert.</summary>
internal static class SecretCommand
{
    private static readonly Option<string> Out = new("--out") { Description = "Where to write it (created, readable by its owner only; an existing file is not overwritten)", Required = true };

    private static readonly Option<bool> ReadToken = new("--read-token") { Description = "Write the job's read-only token instead, derived from --secret-file: for tools that may only look (status, dashboard, /metrics)" };

    public static Command Create()
    {
        var command = new Command("secret", "Write a new random job secret (32 bytes as hex) for --secret-file: give the same file to every node and tool of the job") { Out, ReadToken };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string path = p.GetValue(Out)!;
            if (p.GetValue(ReadToken))
            {
                var secret = JobSecret.FromEnvironment() ?? throw new ArgumentException("--read-token derives the token from the job's secret: give --secret-file");
                try
                {
                    JobSecret.WriteReadToken(secret, path);
                }
                catch (IOException ex)
                {
                    throw new ArgumentException($"cannot write the token to '{path}': {ex.Message}", ex);
                }
                Console.Error.WriteLine($"wrote the job's read-only token to {path}: tools given --token-file {path} may ask for status and statistics; HTTP clients send it as 'Authorization: Bearer TOKEN' (a browser opens the dashboard once with ?token=TOKEN)");
                return Task.FromResult(ExitCodes.Ok);
            }
            try
            {
                JobSecret.Generate(path);
            }
            catch (IOException ex)
            {
                throw new ArgumentException($"cannot write the secret to '{path}': {ex.Message}", ex);
            }
            Console.Error.WriteLine($"wrote a new job secret to {path}: start every node and tool with --secret-file {path} (or PS_SECRET_FILE={path})");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static readonly Option<string> OutDir = new("--out") { Description = "The folder to write job.crt and job.key into (created; existing files are not overwritten)", Required = true };

    private static readonly Option<int> Days = new("--days") { Description = "Days the certificate is valid", DefaultValueFactory = _ => 365 };

    public static Command CreateTlsCert()
    {
        var command = new Command("tls-cert", "Write a new self-signed job certificate and key (ECDSA P-256, PEM) for --tls-cert and --tls-key: give both to every node and tool of the job") { OutDir, Days };
        command.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string dir = p.GetValue(OutDir)!;
            int days = p.GetValue(Days);
            if (days < 1)
            {
                throw new ArgumentException($"--days must be at least 1, got {days}");
            }
            string certificate = Path.Combine(dir, "job.crt");
            string key = Path.Combine(dir, "job.key");
            try
            {
                Directory.CreateDirectory(dir);
                TlsOptions.Generate(certificate, key, days);
            }
            catch (IOException ex)
            {
                throw new ArgumentException($"cannot write the certificate to '{dir}': {ex.Message}", ex);
            }
            Console.Error.WriteLine($"wrote a job certificate valid for {days} days to {certificate} and its key to {key}: start every node and tool with --tls-cert {certificate} --tls-key {key}");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
