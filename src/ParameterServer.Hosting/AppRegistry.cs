using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace ParameterServer.Hosting;

/// <summary>
/// The apps this program can run: every <see cref="PsAppAttribute"/> of the assemblies it was built with (the project
/// references listed in its .deps.json, so a CLI finds an app by referencing its project, nothing else).
/// </summary>
public static class AppRegistry
{
    /// <summary>Every app found, by name.</summary>
    public static IReadOnlyList<IPsAppDefinition> Apps { get; } = Discover();

    /// <summary>The names of <see cref="Apps"/>, in order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Apps.Select(a => a.Name)];

    /// <summary>--app NAME: the app `pserver worker` and `pserver local` run.</summary>
    public static readonly Option<string> App = PsOptions.Create("--app", "counter", $"The app to run: {string.Join(", ", Names)}");

    /// <summary>--app, --consistency and every app's options: what `pserver worker` and `pserver local` accept.</summary>
    public static IEnumerable<Option> AllOptions => [App, PsOptions.Consistency, .. Apps.SelectMany(a => a.Options).Distinct()];

    /// <summary>The app called <paramref name="name"/>; throws <see cref="ArgumentException"/> naming the known ones.</summary>
    public static IPsAppDefinition Find(string name) =>
        Apps.FirstOrDefault(a => a.Name == name) ?? throw new ArgumentException($"unknown app '{name}': expected one of {string.Join(", ", Names)}");

    /// <summary>The app --app names, built from the parsed options (which it validates).</summary>
    public static IPsApp Create(ParseResult p) => Find(p.GetValue(App)!).Create(p);

    /// <summary>--app, --consistency and the app's options as arguments for a child `pserver worker`.</summary>
    public static List<string> Forward(ParseResult p) => Forward(p, Find(p.GetValue(App)!));

    /// <summary>--app, --consistency and the options of <paramref name="app"/> as arguments for a child `pserver worker`.</summary>
    public static List<string> Forward(ParseResult p, IPsAppDefinition app) =>
        [App.Name, app.Name, PsOptions.Consistency.Name, p.GetValue(PsOptions.Consistency)!, .. app.Forward(p)];

    /// <summary>Adds <c>NAME VALUE</c> to <paramref name="args"/> unless the value is null (invariant culture): a helper for <see cref="IPsAppDefinition.Forward"/>.</summary>
    public static void AddArgument(List<string> args, string name, object? value)
    {
        if (value is not null)
        {
            args.Add(name);
            args.Add(Convert.ToString(value, CultureInfo.InvariantCulture)!);
        }
    }

    private static List<IPsAppDefinition> Discover()
    {
        var found = new Dictionary<string, IPsAppDefinition>(StringComparer.Ordinal);
        foreach (var assembly in CandidateAssemblies())
        {
            foreach (var attribute in assembly.GetCustomAttributes<PsAppAttribute>())
            {
                var definition = (IPsAppDefinition)Activator.CreateInstance(attribute.Definition)!;
                if (!found.TryAdd(definition.Name, definition) && found[definition.Name].GetType() != definition.GetType())
                {
                    throw new InvalidOperationException($"two apps are called '{definition.Name}': {found[definition.Name].GetType()} and {definition.GetType()}");
                }
            }
        }
        return [.. found.Values.OrderBy(a => a.Name, StringComparer.Ordinal)];
    }

    /// <summary>The loaded assemblies and the project references in the running program's .deps.json.</summary>
    private static IEnumerable<Assembly> CandidateAssemblies()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string hosting = typeof(AppRegistry).Assembly.GetName().Name!;
        foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
        {
            if (assembly.GetName().Name is { } name && seen.Add(name) && assembly.GetReferencedAssemblies().Any(r => r.Name == hosting))
            {
                yield return assembly;
            }
        }
        foreach (string name in ProjectReferences())
        {
            if (seen.Add(name) && TryLoad(name) is { } assembly)
            {
                yield return assembly;
            }
        }
    }

    private static Assembly? TryLoad(string name)
    {
        try
        {
            return Assembly.Load(new AssemblyName(name));
        }
        catch (FileNotFoundException)
        {
            return null; // a project whose assembly has another name (an executable's)
        }
    }

    private static IEnumerable<string> ProjectReferences()
    {
        if (AppContext.GetData("APP_CONTEXT_DEPS_FILES") is not string files)
        {
            yield break;
        }
        foreach (string path in files.Split(';', StringSplitOptions.RemoveEmptyEntries)) // ';' on every OS
        {
            if (!File.Exists(path))
            {
                continue;
            }
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (!doc.RootElement.TryGetProperty("libraries", out var libraries))
            {
                continue;
            }
            foreach (var library in libraries.EnumerateObject())
            {
                if (library.Value.TryGetProperty("type", out var type) && type.GetString() == "project")
                {
                    yield return library.Name[..library.Name.IndexOf('/')];
                }
            }
        }
    }
}
