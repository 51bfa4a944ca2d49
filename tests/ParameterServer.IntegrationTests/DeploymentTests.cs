using System.CommandLine;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using ParameterServer.Cli;
using ParameterServer.Hosting;

namespace ParameterServer.IntegrationTests;

/// <summary>
/// The shipped deployment files hold together: the Kubernetes manifests load as typed objects, every container's
/// command line is one `pserver` accepts, ports, probes and services agree, the ConfigMap names real options, and the
/// Dockerfile publishes the CLI it runs. (No cluster here: this is the client-side check CI can make.)
/// </summary>
public sealed class DeploymentTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ParameterServer.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("the repository root (ParameterServer.slnx) is not above the test binaries");
    }

    private static List<object> Manifests() =>
        Directory.GetFiles(Path.Combine(Root, "deploy", "kubernetes"), "*.yaml").SelectMany(f => KubernetesYaml.LoadAllFromString(File.ReadAllText(f))).ToList();

    private static IEnumerable<(string Owner, V1PodTemplateSpec Pod)> Pods(List<object> manifests) =>
        manifests.Select(m => m switch
        {
            V1Deployment d => (d.Metadata.Name, d.Spec.Template),
            V1StatefulSet s => (s.Metadata.Name, s.Spec.Template),
            V1Job j => (j.Metadata.Name, j.Spec.Template),
            _ => ((string, V1PodTemplateSpec)?)null,
        }).OfType<(string, V1PodTemplateSpec)>();

    [Fact]
    public void The_manifests_hold_a_scheduler_servers_and_workers()
    {
        var manifests = Manifests();
        Assert.Equal(["ConfigMap", "Deployment", "Job", "Service", "Service", "StatefulSet"], manifests.Select(m => ((IKubernetesObject)m).Kind).Order());
        var roles = Pods(manifests).Select(p => p.Pod.Spec.Containers.Single().Args[0]).Order();
        Assert.Equal(["scheduler", "server", "worker"], roles);
    }

    [Fact]
    public void Every_container_runs_a_command_line_pserver_accepts_with_ports_and_probes_that_agree()
    {
        var manifests = Manifests();
        var services = manifests.OfType<V1Service>().ToList();
        foreach (var (owner, pod) in Pods(manifests))
        {
            var container = pod.Spec.Containers.Single();
            // Kubernetes expands $(VAR) from the container's env.
            string[] args = container.Args.Select(a => Regex.Replace(a, @"\$\((\w+)\)", "10.0.0.7")).ToArray();
            var parsed = PserverCommands.Build().Parse(args);
            Assert.True(parsed.Errors.Count == 0, $"{owner}: pserver {string.Join(' ', args)}: {string.Join("; ", parsed.Errors.Select(e => e.Message))}");
            Assert.Empty(parsed.UnmatchedTokens);

            string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
            var ports = container.Ports?.ToDictionary(p => p.Name, p => p.ContainerPort) ?? new Dictionary<string, int>();
            foreach (string option in new[] { "--port", "--metrics-port", "--dashboard-port" })
            {
                if (Arg(option) is { } value)
                {
                    Assert.Contains(int.Parse(value, System.Globalization.CultureInfo.InvariantCulture), ports.Values);
                }
            }
            foreach (var probe in new[] { container.ReadinessProbe, container.LivenessProbe }.OfType<V1Probe>())
            {
                string port = probe.HttpGet.Port.Value;
                Assert.True(ports.ContainsKey(port), $"{owner}: a probe names port '{port}', which the container does not declare");
                Assert.StartsWith("/health", probe.HttpGet.Path, StringComparison.Ordinal);
                int number = ports[port];
                Assert.True(Arg("--metrics-port") == number.ToString(System.Globalization.CultureInfo.InvariantCulture) || Arg("--dashboard-port") == number.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    $"{owner}: the probe's port {number} serves no /health (neither --metrics-port nor --dashboard-port)");
            }
            if (Arg("--scheduler") is { } scheduler)
            {
                // The scheduler's address is a Service that selects the scheduler's pods on its --port.
                string[] hostPort = scheduler.Split(':');
                var service = services.Single(s => s.Metadata.Name == hostPort[0]);
                Assert.Contains(service.Spec.Ports, p => p.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) == hostPort[1]);
                var target = Pods(manifests).Single(p => service.Spec.Selector.All(l => p.Pod.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value));
                Assert.Equal("scheduler", target.Pod.Spec.Containers.Single().Args[0]);
                Assert.Equal(hostPort[1], target.Pod.Spec.Containers.Single().Args.SkipWhile(a => a != "--port").Skip(1).First());
            }
        }
        foreach (var service in services)
        {
            Assert.Contains(Pods(manifests), p => service.Spec.Selector.All(l => p.Pod.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value));
        }
    }

    [Fact]
    public void Every_pod_mounts_the_job_secret_the_config_map_names()
    {
        var manifests = Manifests();
        string file = Manifests().OfType<V1ConfigMap>().Single().Data["PS_SECRET_FILE"];
        foreach (var (owner, pod) in Pods(manifests))
        {
            var mount = pod.Spec.Containers.Single().VolumeMounts?.SingleOrDefault(m => file.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
            Assert.True(mount is not null, $"{owner} does not mount {file}");
            var volume = pod.Spec.Volumes.Single(v => v.Name == mount.Name);
            Assert.Equal("pserver-secret", volume.Secret?.SecretName);
        }
    }

    [Fact]
    public void The_config_map_sets_only_options_pserver_has()
    {
        var config = Manifests().OfType<V1ConfigMap>().Single();
        var root = PserverCommands.Build();
        var names = root.Subcommands.SelectMany(c => c.Options).Concat(root.Options).Select(o => Settings.EnvironmentName(o.Name)).ToHashSet();
        Assert.All(config.Data.Keys, key => Assert.True(names.Contains(key), $"{key} is no pserver option's variable"));
    }

    [Fact]
    public void The_dockerfile_publishes_the_cli_it_runs()
    {
        string dockerfile = File.ReadAllText(Path.Combine(Root, "deploy", "Dockerfile"));
        string project = Regex.Match(dockerfile, @"dotnet publish (\S+\.csproj)").Groups[1].Value;
        Assert.True(File.Exists(Path.Combine(Root, project)), $"the Dockerfile publishes {project}, which does not exist");
        string assembly = Regex.Match(File.ReadAllText(Path.Combine(Root, project)), "<AssemblyName>(.+)</AssemblyName>").Groups[1].Value;
        Assert.Contains($"ENTRYPOINT [\"dotnet\", \"/app/{assembly}.dll\"]", dockerfile, StringComparison.Ordinal);
        Assert.Contains("FROM mcr.microsoft.com/dotnet/aspnet:10.0", dockerfile, StringComparison.Ordinal); // Kestrel needs the ASP.NET Core runtime
    }
}
