namespace ParameterServer.Apps;

/// <summary>The apps `pserver worker --app NAME` can run.</summary>
public static class AppCatalog
{
    public static IReadOnlyList<string> Names { get; } = ["counter", "logreg"];
}
