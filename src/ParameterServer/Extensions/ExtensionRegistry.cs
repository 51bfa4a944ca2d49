namespace ParameterServer.Extensions;

/// <summary>
/// The one way to plug code into the parameter server: every extension is named by a spec string on the table
/// (<c>name</c> or <c>name:parameters</c>) and created by the factory registered under that name, which receives the
/// whole spec. The built-ins are registered the same way and cannot be replaced. Servers resolve update handlers and
/// pull filters (<see cref="Server.ServerOptions.Extensions"/>); workers resolve push filters.
/// </summary>
/// <remarks>
/// Fast paths are interfaces an extension may also implement: <see cref="IRunUpdateHandler"/> (a run of consecutive
/// rows in one call) and <see cref="IElementwiseUpdateHandler"/> (a row slice on its own, so large pushes are applied
/// while they stream in).
/// </remarks>
public sealed class ExtensionRegistry
{
    private readonly Dictionary<string, Func<string, IUpdateHandler>> _handlers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<string, IPullFilter>> _pullFilters = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<string, IPushFilter>> _pushFilters = new(StringComparer.Ordinal);

    /// <summary>Registers an update handler under <paramref name="name"/>; tables select it with <c>Handler = "name"</c> or <c>"name:param=value,..."</c>.</summary>
    public ExtensionRegistry AddHandler(string name, Func<string, IUpdateHandler> factory)
    {
        Check(name, factory, UpdateHandlers.BuiltInNames.Contains(name), "handler");
        _handlers[name] = factory;
        return this;
    }

    /// <summary>Registers a pull filter under <paramref name="name"/>; tables select it with <c>PullFilter = "name"</c> or <c>"name:parameters"</c>.</summary>
    public ExtensionRegistry AddPullFilter(string name, Func<string, IPullFilter> factory)
    {
        Check(name, factory, PullFilters.BuiltInNames.Contains(name.ToLowerInvariant()), "pull filter");
        _pullFilters[name] = factory;
        return this;
    }

    /// <summary>Registers a push filter under <paramref name="name"/>, for <see cref="CreatePushFilter"/> (apps' <c>--filter name:parameters</c>).</summary>
    public ExtensionRegistry AddPushFilter(string name, Func<string, IPushFilter> factory)
    {
        Check(name, factory, PushFilters.BuiltInNames.Contains(name.ToLowerInvariant()), "push filter");
        _pushFilters[name] = factory;
        return this;
    }

    /// <summary>What a server's registration lists before a registered pull filter's name (handler names have no ':').</summary>
    internal const string PullFilterPrefix = "pull-filter:";

    /// <summary>
    /// What a server tells the scheduler it can run: the update handlers it knows, then its registered pull filters
    /// (as <see cref="PullFilterPrefix"/>NAME), so a table naming one it lacks is refused when declared.
    /// </summary>
    internal IReadOnlyCollection<string> AdvertisedNames => [.. HandlerNames, .. _pullFilters.Keys.Select(n => PullFilterPrefix + n)];

    /// <summary>The handler names this registry knows: the built-ins, then the registered ones.</summary>
    public IReadOnlyCollection<string> HandlerNames => UpdateHandlers.BuiltInNames.Concat(_handlers.Keys).ToArray();

    /// <summary>The handler a spec names: a registered one, else a built-in (an ArgumentException says what is accepted).</summary>
    public IUpdateHandler CreateHandler(string spec) =>
        _handlers.TryGetValue(NameOf(spec), out var factory) ? factory(spec) : UpdateHandlers.Parse(spec);

    /// <summary>The pull filter a spec names (null for none): a registered one, else a built-in.</summary>
    public IPullFilter? CreatePullFilter(string spec)
    {
        string name = NameOf(spec);
        if (_pullFilters.TryGetValue(name, out var factory))
        {
            return factory(spec);
        }
        return PullFilters.IsBuiltIn(spec)
            ? PullFilters.Parse(spec)
            : throw new ArgumentException($"pull filter '{name}' is not registered on this server (ServerOptions.AddPullFilter; built in: sigmod:THRESHOLD)");
    }

    /// <summary>The push filter a spec names (null for none): a registered one, else a built-in (kkt needs the app's weights: <see cref="KktFilter"/>).</summary>
    public IPushFilter? CreatePushFilter(string spec, Func<KktFilter>? kkt = null) =>
        _pushFilters.TryGetValue(NameOf(spec), out var factory) ? factory(spec) : PushFilters.Parse(spec, kkt);

    private static string NameOf(string spec) => spec.Split(':', 2)[0];

    private static void Check(string name, Delegate factory, bool builtIn, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        if (name.Contains(':') || builtIn)
        {
            throw new ArgumentException($"{what} name '{name}' is reserved or contains ':'", nameof(name));
        }
    }
}
