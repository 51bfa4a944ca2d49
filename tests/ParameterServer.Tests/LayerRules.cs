using Mono.Cecil;

namespace ParameterServer.Tests;

/// <summary>A room: the namespaces it holds and the rooms it may use. A namespace pattern is either exact
/// ("ParameterServer") or a namespace with all its sub-namespaces ("ParameterServer.Server.*").</summary>
internal sealed record Room(string Name, string[] Namespaces, string[] MayUse);

/// <summary>A type arrow that breaks the rules, between two top-level types; <see cref="Via"/> lists how.</summary>
internal sealed record Violation(string From, string To, IReadOnlyList<string> Via)
{
    /// <summary>"A.Type -> B.Type": the key a known exception is listed by.</summary>
    public string Arrow => $"{From} -> {To}";

    public override string ToString() => $"{Arrow} (via {string.Join(", ", Via)})";
}

/// <summary>Namespace-level arrows inside one assembly. A type belongs to the room of its top-level type's
/// namespace (longest pattern wins); a room may use itself and the rooms it lists. Types of the assembly outside
/// <see cref="OwnNamespace"/> (compiler and source-generator output) are not judged; a type inside it that no room
/// holds is a violation of its own.</summary>
internal sealed class LayerRules(string ownNamespace, IReadOnlyList<Room> rooms)
{
    public string OwnNamespace { get; } = ownNamespace;

    public IReadOnlyList<Room> Rooms { get; } = rooms;

    private bool IsOwn(string ns) => ns == OwnNamespace || ns.StartsWith(OwnNamespace + ".", StringComparison.Ordinal);

    public Room? RoomOf(string ns)
    {
        Room? best = null;
        var bestLength = -1;
        foreach (var room in Rooms)
        {
            foreach (var pattern in room.Namespaces)
            {
                var matches = pattern.EndsWith(".*", StringComparison.Ordinal)
                    ? ns == pattern[..^2] || ns.StartsWith(pattern[..^1], StringComparison.Ordinal)
                    : ns == pattern;
                if (matches && pattern.Length > bestLength)
                {
                    (best, bestLength) = (room, pattern.Length);
                }
            }
        }
        return best;
    }

    /// <summary>Every arrow of <paramref name="module"/> between two of its own types that the rules forbid, sorted.</summary>
    public IReadOnlyList<Violation> Check(ModuleDefinition module)
    {
        var assembly = module.Assembly.Name.Name;
        var arrows = new SortedDictionary<(string From, string To), SortedSet<string>>();
        foreach (var dependency in TypeDependencies.Of(module))
        {
            var from = TypeDependencies.TopLevel(dependency.From);
            var to = TypeDependencies.TopLevel(dependency.To);
            if (TypeDependencies.AssemblyName(to) != assembly || !IsOwn(from.Namespace) || !IsOwn(to.Namespace) || from.FullName == to.FullName)
            {
                continue;
            }
            var fromRoom = RoomOf(from.Namespace);
            var toRoom = RoomOf(to.Namespace);
            if (fromRoom is not null && toRoom is not null && (fromRoom == toRoom || fromRoom.MayUse.Contains(toRoom.Name)))
            {
                continue;
            }
            var via = toRoom is null ? $"{dependency.Via}; {to.Namespace} is in no room"
                : fromRoom is null ? $"{dependency.Via}; {from.Namespace} is in no room"
                : dependency.Via;
            var key = (from.FullName, to.FullName);
            if (!arrows.TryGetValue(key, out var vias))
            {
                arrows[key] = vias = new SortedSet<string>(StringComparer.Ordinal);
            }
            vias.Add(via);
        }
        return arrows.Select(a => new Violation(a.Key.From, a.Key.To, a.Value.ToArray())).ToArray();
    }
}
