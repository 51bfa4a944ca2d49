using System.Text.Json;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Checkpoints;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;

namespace ParameterServer.Server.Checkpoints;

/// <summary>
/// Checkpoints, driven by the scheduler: on request a server copies the rows of the blocks it is primary for in one
/// pause of its updates (every push applied here before the copy is in it, none after: consistent at one point of
/// this server's history), then writes them off the update path (Project Adam's delayed persistence) and reports
/// the file. On restore it loads, from every server's file, the rows of the blocks whose chain it is in.
/// </summary>
internal sealed class ServerCheckpoints(LocalServer self, ViewGate gate, TableSet tables, Action<long, byte[]> reportWritten)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;
    private readonly TableSet _tables = tables;

    /// <summary>The folder the scheduler asked this server to restore from, loaded on the first ready view.</summary>
    public void RestoreFrom(string folder) => _restoreFolder = folder;

    /// <summary>
    /// Copies the rows of the blocks <paramref name="include"/> selects while no push is applied here: pushes apply under
    /// the update gate's read side, the copy takes its write side; large streamed pushes finish first.
    /// </summary>
    private List<CheckpointFiles.TableRows> Snapshot(IReadOnlyList<TableStore> tables, Func<TableStore, long, bool> include)
    {
        _gate.PauseStreamedApplies();
        try
        {
            _gate.EnterExclusive();
            try
            {
                var snapshot = new List<CheckpointFiles.TableRows>();
                foreach (var table in tables)
                {
                    var blocks = new List<(ulong[] Keys, float[] Rows)>();
                    var keys = new List<ulong>();
                    var rows = new List<float>();
                    foreach (long block in table.StoredBlocks())
                    {
                        if (!include(table, block))
                        {
                            continue;
                        }
                        keys.Clear();
                        rows.Clear();
                        table.SnapshotBlock(block, keys, rows);
                        if (keys.Count > 0)
                        {
                            blocks.Add((keys.ToArray(), rows.ToArray()));
                        }
                    }
                    snapshot.Add(new CheckpointFiles.TableRows(table.Info.Id, table.Width, table.RowStride, blocks));
                }
                return snapshot;
            }
            finally
            {
                _gate.ExitExclusive();
            }
        }
        finally
        {
            _gate.ResumeStreamedApplies();
        }
    }

    private string? _restoreFolder;

    private bool _restored;

    private long _checkpointsWritten;

    public void OnCheckpointRequest(long epoch, string folder) => _ = Task.Run(() =>
    {
        string path = Path.Combine(folder, CheckpointFiles.ServerFileName(_self.Id));
        object result;
        try
        {
            var view = _gate.Current ?? throw new InvalidOperationException("no view yet");
            int mySlot = view.SlotOfServer(_self.Id);
            var tables = _tables.All.OfType<TableStore>().ToList();
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var snapshot = Snapshot(tables, (table, block) => view.PlacementOf(table.Info).SlotOfBlock(block) == mySlot);
            var (bytes, sha, rows) = CheckpointFiles.WriteServerFile(path, _self.Id, epoch, snapshot);
            Interlocked.Increment(ref _checkpointsWritten);
            _self.Log.LogCheckpointWritten(_self.Id, epoch, rows, bytes,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            result = new { ok = true, name = Path.GetFileName(path), bytes, sha256 = sha, rows };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            _self.Log.LogCheckpointWriteFailed(_self.Id, epoch, path, ex.Message);
            result = new { ok = false, error = $"server {_self.Id} cannot write {path}: {ex.Message}" };
        }
        try
        {
            reportWritten(epoch, JsonSerializer.SerializeToUtf8Bytes(result));
        }
        catch (PsException ex)
        {
            _self.Log.LogCheckpointReportFailed(_self.Id, epoch, ex.Message);
        }
    });

    /// <summary>On the first ready view after a Restore request: loads the rows this server holds under that view. Under _tablesLock.</summary>
    public void RestoreIfAsked(ClusterView view)
    {
        if (_restoreFolder is not { } folder || _restored || !view.Ready)
        {
            return;
        }
        _restored = true;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (_, manifest) = CheckpointFiles.Open(folder);
        int mySlot = view.SlotOfServer(_self.Id);
        long loaded = 0;
        var tables = _tables.All;
        foreach (var file in manifest.Files)
        {
            string path = Path.Combine(folder, file.Name);
            CheckpointFiles.ReadServerFile(path, (tableId, stride, keys, rows) =>
            {
                var table = (uint)tableId < (uint)tables.Length ? tables[tableId] : null;
                if (table is null || table.RowStride != stride)
                {
                    throw CheckpointFiles.Corrupt(path, $"holds rows of stride {stride} for table {tableId}, which this job declares differently");
                }
                var placement = view.PlacementOf(table.Info);
                Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
                for (int i = 0; i < keys.Length; i++)
                {
                    long block = table.Info.BlockOf(keys[i]);
                    int n = placement.ChainOfBlock(block, chain);
                    if (chain[..n].Contains(mySlot))
                    {
                        try
                        {
                            table.WriteBlockRows(block, KeyList.Of(keys.Slice(i, 1)), rows.Slice(i * stride, stride), clearFirst: false);
                        }
                        catch (ArgumentException ex)
                        {
                            throw CheckpointFiles.Corrupt(path, $"holds a row this job cannot take: {ex.Message}");
                        }
                        loaded++;
                    }
                }
            });
        }
        _self.Log.LogCheckpointRestored(_self.Id, loaded, folder, manifest.Epoch,
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }
}
