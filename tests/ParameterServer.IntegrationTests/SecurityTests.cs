using ParameterServer.Transport;

namespace ParameterServer.IntegrationTests;

/// <summary>A job closed by its secret, through real pserver processes: who gets in, who is refused, and what each is told.</summary>
[Collection("processes")]
public sealed class SecurityTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-security-it-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<Pserver> RunWithAsync(Dictionary<string, string> environment, params string[] arguments)
    {
        var run = Pserver.StartWith(environment, arguments);
        await run.WaitForExitAsync(Limit);
        return run;
    }

    [Fact]
    public async Task A_scheduler_refuses_tools_with_another_secret_or_none_logs_their_address_and_serves_the_right_one()
    {
        // The tests' own secret (JobSecretSetup) is this job's; the children inherit it.
        using var scheduler = Pserver.Start("scheduler", "--port", "0", "--servers", "1", "--workers", "1");
        string line = await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
        string address = line["scheduler listening on ".Length..];

        string other = Path.Combine(_dir, "other-secret");
        JobSecret.Generate(other);
        using var wrong = await RunWithAsync(new() { [JobSecret.Variable] = other }, "status", "--scheduler", address);
        Assert.True(wrong.ExitCode == 2, wrong.Describe()); // a configuration error, not a network one
        Assert.Contains("does not hold this job's secret", wrong.Stderr, StringComparison.Ordinal);

        using var none = await RunWithAsync(new() { [JobSecret.Variable] = "" }, "status", "--scheduler", address);
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("this process needs the same file", none.Stderr, StringComparison.Ordinal);

        using var right = await Pserver.RunAsync(Limit, "status", "--scheduler", address, "--json");
        Assert.True(right.ExitCode == 0, right.Describe());

        // The read-only token, made from the secret: status yes, drain no.
        string token = Path.Combine(_dir, "read-token");
        using (var made = await Pserver.RunAsync(Limit, "secret", "--read-token", "--out", token))
        {
            Assert.True(made.ExitCode == 0, made.Describe());
        }
        var reader = new Dictionary<string, string> { [JobSecret.Variable] = "", [JobSecret.TokenVariable] = token };
        using var look = await RunWithAsync(reader, "status", "--scheduler", address, "--json");
        Assert.True(look.ExitCode == 0, look.Describe());
        using var drain = await RunWithAsync(reader, "drain", "--scheduler", address, "--node", "1");
        Assert.NotEqual(0, drain.ExitCode);
        Assert.Contains("proved the role reader", drain.Stderr, StringComparison.Ordinal);

        await scheduler.WaitForLineAsync(l => l.Contains("Refused a connection: 127.0.0.1:", StringComparison.Ordinal) && l.Contains("does not hold the same one", StringComparison.Ordinal), Limit, stderr: true);
        await scheduler.WaitForLineAsync(l => l.Contains("sent no authentication hello", StringComparison.Ordinal), Limit, stderr: true);
    }

    [Fact]
    public async Task A_node_will_not_listen_on_all_interfaces_without_a_secret_unless_told_insecure()
    {
        var open = new Dictionary<string, string> { [JobSecret.Variable] = "" };
        using var refused = await RunWithAsync(open, "scheduler", "--host", "0.0.0.0", "--port", "0", "--servers", "1", "--workers", "1");
        Assert.True(refused.ExitCode == 2, refused.Describe());
        Assert.Contains("refusing to listen on 0.0.0.0", refused.Stderr, StringComparison.Ordinal);
        Assert.Contains("--secret-file", refused.Stderr, StringComparison.Ordinal);

        using var insecure = Pserver.StartWith(open, "scheduler", "--host", "0.0.0.0", "--port", "0", "--servers", "1", "--workers", "1", "--insecure");
        await insecure.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);

        string shortSecret = Path.Combine(_dir, "short");
        await File.WriteAllTextAsync(shortSecret, "abc\n");
        using var bad = await Pserver.RunAsync(Limit, "status", "--secret-file", shortSecret);
        Assert.True(bad.ExitCode == 2, bad.Describe());
        Assert.Contains("at least 16", bad.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_job_runs_over_TLS_and_a_tool_without_the_job_certificate_is_kept_out()
    {
        // `local --tls` makes a throwaway job certificate for its children; the counters must come out exact over it.
        using (var local = await Pserver.RunAsync(Limit, "local", "--tls", "--servers", "2", "--workers", "2", "--app", "counter", "--json", "--keys", "300", "--rounds", "10"))
        {
            Assert.True(local.ExitCode == 0, local.Describe());
            Assert.Equal(2, local.StdoutLines.Count(l => l.Contains("{\"app\":\"counter\",\"ok\":true,\"rank\"", StringComparison.Ordinal)));
        }

        // A node started on its own with --tls needs a certificate, and says how to make one.
        using var missing = await RunWithAsync(new(), "scheduler", "--tls", "--port", "0", "--servers", "1", "--workers", "1");
        Assert.True(missing.ExitCode == 2, missing.Describe());
        Assert.Contains("pserver tls-cert --out DIR", missing.Stderr, StringComparison.Ordinal);

        using (var made = await Pserver.RunAsync(Limit, "tls-cert", "--out", _dir))
        {
            Assert.True(made.ExitCode == 0, made.Describe());
        }
        var tls = new Dictionary<string, string> { [TlsOptions.CertificateVariable] = Path.Combine(_dir, "job.crt"), [TlsOptions.KeyVariable] = Path.Combine(_dir, "job.key") };
        using var scheduler = Pserver.StartWith(tls, "scheduler", "--port", "0", "--servers", "1", "--workers", "1");
        string line = await scheduler.WaitForLineAsync(l => l.StartsWith("scheduler listening on ", StringComparison.Ordinal), Limit);
        string address = line["scheduler listening on ".Length..];

        using var plain = await RunWithAsync(new(), "status", "--scheduler", address);
        Assert.NotEqual(0, plain.ExitCode);
        using var right = await RunWithAsync(tls, "status", "--scheduler", address, "--json");
        Assert.True(right.ExitCode == 0, right.Describe());
        await scheduler.WaitForLineAsync(l => l.Contains("Refused a connection", StringComparison.Ordinal) && l.Contains("TLS", StringComparison.Ordinal), Limit, stderr: true);
    }
}
