using System.Text.RegularExpressions;
using System.Xml.Linq;
using Mono.Cecil;

namespace ParameterServer.Tests;

/// <summary>Dependencies flow one way, checked on the compiled assemblies (Mono.Cecil reads every type a type uses,
/// down to the IL of its method bodies): Protocol &lt;- Transport &lt;- core (ParameterServer, Core.*, Extensions)
/// &lt;- Server / Client / Scheduler &lt;- Hosting &lt;- apps &lt;- pserver. Folder = namespace is checked on the sources.</summary>
public partial class ArchitectureTests
{
    private const string Runtime = "ParameterServer";

    // ---------------------------------------------------------------- assemblies

    /// <summary>Which assemblies of ours each shipped assembly may reference. A name ending in "*" is a prefix. An
    /// assembly that is not built (yet) is skipped; a project under src/ that no row names fails the test.</summary>
    private static readonly (string Assembly, string[] MayReference)[] AssemblyRules =
    [
        (Runtime, []),
        // The model library knows nothing of the parameter server (an adapter binds models to tables).
        ("ParameterServer.Nn", []),
        // The adapter binds models (the Nn contract) to tables (the runtime's public API).
        ("ParameterServer.Nn.Distributed", [Runtime, "ParameterServer.Nn"]),
        ("ParameterServer.Hosting", [Runtime]),
        ("ParameterServer.Apps.*", [Runtime, "ParameterServer.Hosting", "ParameterServer.Nn", "ParameterServer.Nn.Distributed"]),
        // The bench tools (bench/ParameterServer.Bench) sit beside the apps: the CLI's `pserver bench` commands call them.
        ("pserver", [Runtime, "ParameterServer.Hosting", "ParameterServer.Apps.*", "ParameterServer.Bench", "ParameterServer.Nn", "ParameterServer.Nn.Distributed"]),
    ];

    private static bool NameMatches(string name, string pattern) =>
        pattern.EndsWith('*') ? name.StartsWith(pattern[..^1], StringComparison.Ordinal) : name == pattern;

    private static bool IsOurs(string name) =>
        name == "pserver" || name == Runtime || name.StartsWith(Runtime + ".", StringComparison.Ordinal);

    [Fact]
    public void Assemblies_reference_only_the_layers_below_them()
    {
        var violations = AssemblyViolations(AssemblyRules);
        Assert.True(violations.Count == 0, "assembly references against the layers:\n" + string.Join("\n", violations));
    }

    /// <summary>An app is found by its [assembly: PsApp] attribute alone: the registry lists every app project referenced.</summary>
    [Fact]
    public void The_app_registry_finds_the_referenced_apps()
    {
        Assert.Equal(["counter", "lda", "logreg", "mnist", "sketch", "yt8m"], Hosting.AppRegistry.Names); // mnist through the bench tools
        Assert.IsType<Apps.LogReg.LogRegAppDefinition>(Hosting.AppRegistry.Find("logreg"));
        Assert.Contains("expected one of counter, lda, logreg, mnist", Assert.Throws<ArgumentException>(() => Hosting.AppRegistry.Find("nope")).Message);
    }

    /// <summary>The assembly check can fail: a table that (wrongly) forbids the apps to reference the runtime
    /// reports that reference.</summary>
    [Fact]
    public void The_assembly_check_reports_a_reference_the_table_forbids()
    {
        (string, string[])[] wrong = [.. AssemblyRules.Select(r => r.Assembly.StartsWith("ParameterServer.Apps", StringComparison.Ordinal) ? (r.Assembly, Array.Empty<string>()) : r)];
        Assert.Contains("ParameterServer.Apps.Counter -> ParameterServer", AssemblyViolations(wrong));
    }

    private static List<string> AssemblyViolations((string Assembly, string[] MayReference)[] rules)
    {
        var shipped = ShippedAssemblies();
        Assert.Contains(Runtime, shipped.Keys);
        var violations = new List<string>();
        foreach (var (name, path) in shipped.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var rule = rules.FirstOrDefault(r => NameMatches(name, r.Assembly));
            if (rule.Assembly is null)
            {
                violations.Add($"{name} ({path}) has no row in {nameof(AssemblyRules)}: say which layers it may reference");
                continue;
            }
            using var assembly = AssemblyDefinition.ReadAssembly(path);
            foreach (var reference in assembly.MainModule.AssemblyReferences.Select(r => r.Name).Where(IsOurs))
            {
                if (!rule.MayReference.Any(p => NameMatches(reference, p)))
                {
                    violations.Add($"{name} -> {reference}");
                }
            }
        }
        return violations;
    }

    /// <summary>Shipped assemblies that open their internals to another shipped assembly (not a test or benchmark).
    /// Known exceptions, to be removed: the apps and the CLI must use the public API only.</summary>
    private static readonly string[] KnownInternalsOpenedToBeRemoved = [];

    [Fact]
    public void Internals_are_opened_to_tests_only()
    {
        var shipped = ShippedAssemblies();
        var opened = new List<string>();
        foreach (var (name, path) in shipped.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            using var assembly = AssemblyDefinition.ReadAssembly(path);
            opened.AddRange(assembly.CustomAttributes
                .Where(a => a.AttributeType.FullName == "System.Runtime.CompilerServices.InternalsVisibleToAttribute")
                .Select(a => ((string)a.ConstructorArguments[0].Value).Split(',')[0].Trim())
                .Where(friend => shipped.ContainsKey(friend))
                .Select(friend => $"{name} -> {friend}"));
        }
        var unexpected = opened.Except(KnownInternalsOpenedToBeRemoved).ToArray();
        var stale = KnownInternalsOpenedToBeRemoved.Except(opened).ToArray();
        Assert.True(unexpected.Length == 0, "internals opened to a shipped assembly:\n" + string.Join("\n", unexpected));
        Assert.True(stale.Length == 0, $"fixed, remove from {nameof(KnownInternalsOpenedToBeRemoved)}:\n" + string.Join("\n", stale));
    }

    /// <summary>The shipped assemblies: one per project under src/, read from that project's bin/ in this test's
    /// configuration, or from this test's output folder when the project was not built there.</summary>
    private static Dictionary<string, string> ShippedAssemblies()
    {
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory);
        var tfm = baseDir.Name;
        var configuration = baseDir.Parent!.Name;
        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var project in Directory.EnumerateFiles(Path.Combine(RepositoryRoot(), "src"), "*.csproj", SearchOption.AllDirectories))
        {
            var name = ProjectProperty(project, "AssemblyName") ?? Path.GetFileNameWithoutExtension(project);
            var candidates = new[]
            {
                Path.Combine(Path.GetDirectoryName(project)!, "bin", configuration, tfm, name + ".dll"),
                Path.Combine(baseDir.FullName, name + ".dll"),
            };
            var path = candidates.Where(File.Exists).OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
            if (path is not null)
            {
                found[name] = path;
            }
        }
        return found;
    }

    // ---------------------------------------------------------------- namespaces inside the runtime

    /// <summary>The rooms of the runtime assembly. Sub-namespaces belong to their room (Server.Replication is Server).</summary>
    internal static readonly LayerRules RuntimeRules = new(Runtime,
    [
        new Room("Protocol", ["ParameterServer.Protocol.*"], []),
        new Room("Transport", ["ParameterServer.Transport.*"], ["Protocol"]),
        new Room("Core", ["ParameterServer", "ParameterServer.Core.*", "ParameterServer.Extensions.*"], ["Protocol", "Transport"]),
        new Room("Server", ["ParameterServer.Server.*"], ["Protocol", "Transport", "Core"]),
        new Room("Client", ["ParameterServer.Client.*"], ["Protocol", "Transport", "Core"]),
        new Room("Scheduler", ["ParameterServer.Scheduler.*"], ["Protocol", "Transport", "Core"]),
        // Hosting moves to its own assembly (ParameterServer.Hosting); while it is inside, it may use everything.
        new Room("Hosting", ["ParameterServer.Hosting.*"], ["Protocol", "Transport", "Core", "Server", "Client", "Scheduler"]),
    ]);

    /// <summary>Arrows in today's code that break the rules. Known exceptions, to be removed: each is a bug in the
    /// layering, listed so the test holds the line against new ones. Fix the arrow, then delete its line here (the
    /// test fails on a line that no longer matches anything).</summary>
    private static readonly string[] KnownViolationsToBeRemoved =
    [
    ];

    private static ModuleDefinition ReadRuntime() =>
        ModuleDefinition.ReadModule(typeof(TableSpec).Assembly.Location);

    [Fact]
    public void Runtime_namespaces_depend_only_downwards()
    {
        using var module = ReadRuntime();
        var violations = RuntimeRules.Check(module);
        var unexpected = violations.Where(v => !KnownViolationsToBeRemoved.Contains(v.Arrow)).Select(v => v.ToString()).ToArray();
        var stale = KnownViolationsToBeRemoved.Except(violations.Select(v => v.Arrow)).ToArray();
        Assert.True(unexpected.Length == 0, "type dependencies against the layers:\n" + string.Join("\n", unexpected));
        Assert.True(stale.Length == 0, $"fixed, remove from {nameof(KnownViolationsToBeRemoved)}:\n" + string.Join("\n", stale));
    }

    /// <summary>The guard can fail: the same checker, on the same assembly, with a rule set that (wrongly) forbids
    /// Server -> Core.Cluster, an arrow the server really has, reports that arrow with its type names.</summary>
    [Fact]
    public void The_checker_reports_an_arrow_the_rules_forbid()
    {
        var wrong = new LayerRules(Runtime,
        [
            new Room("Protocol", ["ParameterServer.Protocol.*"], []),
            new Room("Transport", ["ParameterServer.Transport.*"], ["Protocol"]),
            new Room("Cluster", ["ParameterServer.Core.Cluster.*"], ["Protocol", "Transport", "Core"]),
            new Room("Core", ["ParameterServer", "ParameterServer.Core.*", "ParameterServer.Extensions.*"], ["Protocol", "Transport", "Cluster"]),
            new Room("Server", ["ParameterServer.Server.*"], ["Protocol", "Transport", "Core"]), // not Cluster: wrong on purpose
            new Room("Client", ["ParameterServer.Client.*"], ["Protocol", "Transport", "Core", "Cluster"]),
            new Room("Scheduler", ["ParameterServer.Scheduler.*"], ["Protocol", "Transport", "Core", "Cluster"]),
            new Room("Hosting", ["ParameterServer.Hosting.*"], ["Protocol", "Transport", "Core", "Cluster", "Server", "Client", "Scheduler"]),
        ]);
        using var module = ReadRuntime();
        var known = RuntimeRules.Check(module).Select(v => v.Arrow).ToHashSet();
        var violations = wrong.Check(module).Where(v => !known.Contains(v.Arrow)).ToArray();

        Assert.NotEmpty(violations);
        Assert.All(violations, v =>
        {
            Assert.StartsWith("ParameterServer.Server.", v.From, StringComparison.Ordinal);
            Assert.StartsWith("ParameterServer.Core.Cluster.", v.To, StringComparison.Ordinal);
        });
        var arrow = Assert.Single(violations, v => v.Arrow == "ParameterServer.Server.ViewGate -> ParameterServer.Core.Cluster.ClusterView");
        Assert.Contains("field", arrow.Via);
        Assert.Contains("call", arrow.Via);
        Assert.Contains(violations, v => v.To == "ParameterServer.Core.Cluster.HashRing");
    }

    // ---------------------------------------------------------------- folder = namespace

    [GeneratedRegex(@"^\s*namespace\s+([\w.]+)", RegexOptions.Multiline)]
    private static partial Regex NamespaceDeclaration();

    /// <summary>Every .cs file under src/*/ declares the namespace its folder implies: the project's root namespace
    /// plus the folder path. Only a Program.cs of top-level statements has none.</summary>
    [Fact]
    public void Folder_is_namespace()
    {
        var violations = new List<string>();
        var src = Path.Combine(RepositoryRoot(), "src");
        foreach (var project in Directory.EnumerateFiles(src, "*.csproj", SearchOption.AllDirectories))
        {
            var projectDir = Path.GetDirectoryName(project)!;
            var root = ProjectProperty(project, "RootNamespace") ?? Path.GetFileNameWithoutExtension(project);
            foreach (var file in Directory.EnumerateFiles(projectDir, "*.cs", SearchOption.AllDirectories))
            {
                var relative = Path.GetRelativePath(projectDir, file);
                var folder = Path.GetDirectoryName(relative)!;
                if (folder.Split(Path.DirectorySeparatorChar)[0] is "bin" or "obj")
                {
                    continue;
                }
                var expected = folder.Length == 0 ? root : root + "." + folder.Replace(Path.DirectorySeparatorChar, '.');
                var declared = NamespaceDeclaration().Matches(File.ReadAllText(file)).Select(m => m.Groups[1].Value).ToArray();
                if (declared.Length == 0 && Path.GetFileName(file) != "Program.cs")
                {
                    violations.Add($"{Path.GetRelativePath(src, file)}: declares no namespace, expected {expected}");
                }
                violations.AddRange(declared.Where(d => d != expected).Select(d => $"{Path.GetRelativePath(src, file)}: namespace {d}, expected {expected}"));
            }
        }
        Assert.True(violations.Count == 0, "folder and namespace disagree:\n" + string.Join("\n", violations));
    }

    // ---------------------------------------------------------------- helpers

    private static string? ProjectProperty(string project, string property) =>
        XDocument.Load(project).Descendants(property).Select(e => e.Value.Trim()).FirstOrDefault(v => v.Length > 0 && !v.Contains('$', StringComparison.Ordinal));

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ParameterServer.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException("ParameterServer.slnx not found above the test binaries");
    }
}
