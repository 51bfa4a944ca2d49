using System.Reflection;
using System.Text.RegularExpressions;
using ParameterServer.Client;

namespace ParameterServer.Tests;

/// <summary>Dependencies flow one way: protocol &lt;- transport &lt;- cluster &lt;- scheduler / server / worker (the runtime) &lt;- hosting &lt;- apps &lt;- bench &lt;- CLI.</summary>
public partial class ArchitectureTests
{
    private static string[] ProjectReferences(Assembly assembly) =>
        assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("ParameterServer", StringComparison.Ordinal) || n == "pserver").Order().ToArray();

    [Fact]
    public void Assemblies_reference_only_the_layers_below_them()
    {
        Assert.Empty(ProjectReferences(typeof(PsClient).Assembly));
        Assert.Equal(["ParameterServer"], ProjectReferences(typeof(Hosting.AppRegistry).Assembly));
        foreach (var app in new[] { typeof(Apps.Counter.CounterAppDefinition).Assembly, typeof(Apps.LogReg.LogRegAppDefinition).Assembly })
        {
            Assert.Equal(["ParameterServer", "ParameterServer.Hosting"], ProjectReferences(app));
        }
        Assert.Equal(["ParameterServer", "ParameterServer.Apps.LogReg", "ParameterServer.Hosting"], ProjectReferences(typeof(Bench.KvBench).Assembly));
    }

    /// <summary>No internals are opened to a shipped assembly: only the test projects, the test kit and the micro-benchmarks see them.</summary>
    [Fact]
    public void Internals_are_visible_to_test_assemblies_only()
    {
        string[] allowed = ["ParameterServer.Tests", "ParameterServer.IntegrationTests", "ParameterServer.Benchmarks", "ParameterServer.TestKit"];
        foreach (var assembly in new[] { typeof(PsClient).Assembly, typeof(Hosting.AppRegistry).Assembly, typeof(Apps.Counter.CounterAppDefinition).Assembly, typeof(Apps.LogReg.LogRegAppDefinition).Assembly, typeof(Bench.KvBench).Assembly })
        {
            foreach (var friend in assembly.GetCustomAttributes<System.Runtime.CompilerServices.InternalsVisibleToAttribute>())
            {
                Assert.True(allowed.Contains(friend.AssemblyName), $"{assembly.GetName().Name} opens its internals to {friend.AssemblyName}");
            }
        }
    }

    /// <summary>An app is found by its [assembly: PsApp] attribute alone: the registry lists every app project referenced.</summary>
    [Fact]
    public void The_app_registry_finds_the_referenced_apps()
    {
        Assert.Equal(["counter", "logreg"], Hosting.AppRegistry.Names);
        Assert.IsType<Apps.LogReg.LogRegAppDefinition>(Hosting.AppRegistry.Find("logreg"));
        Assert.Contains("expected one of counter, logreg", Assert.Throws<ArgumentException>(() => Hosting.AppRegistry.Find("nope")).Message);
    }

    private static string SourceRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ParameterServer.slnx")))
            {
                return Path.Combine(dir.FullName, "src", "ParameterServer");
            }
        }
        throw new DirectoryNotFoundException("ParameterServer.slnx not found above the test binaries");
    }

    [GeneratedRegex(@"ParameterServer\.(Client|Server|Scheduler|Hosting)\b")]
    private static partial Regex RoleNamespace();

    /// <summary>Inside the runtime assembly: Cluster knows no role; roles do not know each other; only Hosting may know them all.</summary>
    [Theory]
    [InlineData("Core", new string[0])]
    [InlineData("Server", new[] { "Server" })]
    [InlineData("Client", new[] { "Client" })]
    [InlineData("Scheduler", new[] { "Scheduler" })]
    public void Runtime_folders_do_not_reach_sideways(string folder, string[] allowed)
    {
        foreach (var file in Directory.EnumerateFiles(Path.Combine(SourceRoot(), folder), "*.cs", SearchOption.AllDirectories))
        {
            foreach (Match m in RoleNamespace().Matches(File.ReadAllText(file)))
            {
                Assert.True(allowed.Contains(m.Groups[1].Value), $"{Path.GetFileName(file)} in {folder}/ uses ParameterServer.{m.Groups[1].Value}");
            }
        }
    }
}
