using System.Reflection;
using System.Text.RegularExpressions;
using ParameterServer.Client;

namespace ParameterServer.Tests;

/// <summary>Dependencies flow one way: protocol &lt;- transport &lt;- cluster &lt;- scheduler / server / worker &lt;- hosting &lt;- apps &lt;- CLI.</summary>
public partial class ArchitectureTests
{
    private static string[] ProjectReferences(Assembly assembly) =>
        assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("ParameterServer", StringComparison.Ordinal) || n == "pserver").Order().ToArray();

    [Fact]
    public void Assemblies_reference_only_the_layers_below_them()
    {
        Assert.Empty(ProjectReferences(typeof(PsClient).Assembly));
        Assert.DoesNotContain("pserver", ProjectReferences(typeof(Apps.AppCatalog).Assembly));
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
