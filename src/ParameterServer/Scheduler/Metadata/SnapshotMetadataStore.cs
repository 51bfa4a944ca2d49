using System.Text.Json;

namespace ParameterServer.Scheduler.Metadata;

/// <summary>The scheduler's metadata as JSON snapshots in a store shared with standbys (<see cref="ISchedulerStateStore"/>).</summary>
internal sealed class SnapshotMetadataStore(ISchedulerStateStore store) : IMetadataStore
{
    public string Location => store.Location;

    public bool IsActive => store.IsActive;

    public PersistedState? Load()
    {
        if (store.Load() is not { } bytes)
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize<PersistedState>(bytes) ?? throw new JsonException("empty");
        }
        catch (JsonException ex)
        {
            throw new PsException(PsErrorCode.InvalidArgument, $"the scheduler state in {store.Location} is not valid: {ex.Message}");
        }
    }

    public void Save(PersistedState state) => store.Save(JsonSerializer.SerializeToUtf8Bytes(state));
}
