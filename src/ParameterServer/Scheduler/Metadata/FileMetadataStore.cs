using System.Text.Json;
using ParameterServer.Core.Checkpoints;

namespace ParameterServer.Scheduler.Metadata;

/// <summary>The metadata in a local file (<c>scheduler-state.json</c> in the state directory): temp + rename, with a checksum.</summary>
internal sealed class FileMetadataStore : IMetadataStore
{
    public const string FileName = "scheduler-state.json";

    public FileMetadataStore(string directory)
    {
        Directory.CreateDirectory(directory);
        Location = Path.Combine(directory, FileName);
    }

    public string Location { get; }

    public PersistedState? Load()
    {
        if (!File.Exists(Location))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize<PersistedState>(CheckpointFiles.ReadVerified(Location)) ?? throw new JsonException("empty");
        }
        catch (JsonException ex)
        {
            throw CheckpointFiles.Corrupt(Location, $"is not a valid scheduler state: {ex.Message}");
        }
    }

    public void Save(PersistedState state) => CheckpointFiles.WriteAtomically(Location, stream => JsonSerializer.Serialize(stream, state));
}
