using System.Text.Json;
using ParameterServer.Core.Checkpoints;

namespace ParameterServer.Scheduler.Metadata;

/// <summary>
/// The metadata in a local file (<c>scheduler-state.json</c> in the state directory): temp + rename, with a checksum.
/// The scheduler holds a lock on the directory while it runs: a second scheduler on the same state would publish
/// views of its own, so it is refused.
/// </summary>
internal sealed class FileMetadataStore : IMetadataStore, IDisposable
{
    public const string FileName = "scheduler-state.json";
    public const string LockName = "scheduler.lock";

    private readonly FileStream _lock;

    public FileMetadataStore(string directory)
    {
        Directory.CreateDirectory(directory);
        Location = Path.Combine(directory, FileName);
        try
        {
            // FileShare.None is an exclusive lock (flock on Linux), released by the kernel when the process dies.
            _lock = new FileStream(Path.Combine(directory, LockName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new PsException(PsErrorCode.Conflict,
                $"another scheduler is running on the state directory {directory} ({ex.Message}): two schedulers on one state would both publish views. Give each job its own --state-dir; for a standby scheduler, use --etcd");
        }
    }

    public void Dispose() => _lock.Dispose();

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
