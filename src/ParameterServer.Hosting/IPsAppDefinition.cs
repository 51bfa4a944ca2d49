using System.CommandLine;
using System.Text.Json;

namespace ParameterServer.Hosting;

/// <summary>
/// How the launchers find and start an app: its name, its options, its factory. An app project implements it once and
/// names the implementation in <c>[assembly: PsApp(typeof(...))]</c>; <see cref="AppRegistry"/> finds it, so
/// `pserver worker --app NAME`, `pserver local --app NAME` (and `pserver train NAME`, see <see cref="IPsTrainable"/>)
/// run it without any CLI edit.
/// </summary>
public interface IPsAppDefinition
{
    /// <summary>The name after --app (lower case, unique).</summary>
    string Name { get; }

    /// <summary>The app's own options, added to `pserver worker` and `pserver local` (create them with <see cref="PsOptions.Create"/>).</summary>
    IReadOnlyList<Option> Options { get; }

    /// <summary>The app for one worker, from the parsed options; throws <see cref="ArgumentException"/> for a bad value (exit code 2).</summary>
    IPsApp Create(ParseResult parseResult);

    /// <summary>The app's options as arguments for a child `pserver worker` (values already resolved from env and config, paths absolute).</summary>
    IEnumerable<string> Forward(ParseResult parseResult);

    /// <summary>
    /// `pserver local --json`: prints a line summing up the workers' result lines (those starting with <c>{"app"</c>)
    /// and returns the exit code. By default nothing is printed: the app prints its own job-wide summary.
    /// </summary>
    int SummarizeLocal(IReadOnlyList<JsonElement> results, int workers, TextWriter output) => ExitCodes.Ok;
}

/// <summary>An app that `pserver train NAME` runs on a local cluster (implemented by its <see cref="IPsAppDefinition"/>).</summary>
public interface IPsTrainable
{
    /// <summary>The description of `pserver train NAME`.</summary>
    string TrainDescription { get; }

    /// <summary>Options only `pserver train NAME` has (the launcher options and the app's options are added for it).</summary>
    IEnumerable<Option> TrainOptions { get; }

    /// <summary>Runs the training job (usually through <see cref="LocalCluster.Spec"/> and <see cref="LocalJob.RunAsync"/>); returns the exit code.</summary>
    Task<int> TrainAsync(ParseResult parseResult, CancellationToken cancellationToken);
}

/// <summary>Names an assembly's <see cref="IPsAppDefinition"/> (a public class with a parameterless constructor) for <see cref="AppRegistry"/>.</summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class PsAppAttribute(Type definition) : Attribute
{
    /// <summary>The <see cref="IPsAppDefinition"/> type.</summary>
    public Type Definition { get; } = definition;
}
