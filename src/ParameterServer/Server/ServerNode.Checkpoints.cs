using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ParameterServer.Core.Checkpoints;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Server;

/// <summary>
/// Checkpoints, driven by the scheduler: on request a server copies the rows of the blocks it is primary for in one
/// pause of its updates (every push applied here before the copy is in it, none after: consistent at one point of
/// this server's history), then writes them off the update path (Project Adam's delayed persistence) and reports
/// the file. On restore it loads, from every server's file, the rows of the blocks whose chain it is in.
/// </summary>
public sealed partial class ServerNode
{
    private int _streamPauses; // snapshots and view changes under way: no new streamed applies meanwhile
    private int _streamedApplies; // large pushes being applied piece by piece, outside the forward lock

    /// <summary>
    /// A large push may be applied piece by piece unless a snapshot is being taken or a view installed (then it goes
    /// whole, under the lock): both need every push either wholly before them or wholly after.
    /// </summary>
    internal bool TryEnterStreamedApply()
    {
        if (Volatile.Read(ref _streamPauses) > 0)
        {
            return false;
        }
        Interlocked.Increment(ref _streamedApplies);
        if (Volatile.Read(ref _streamPauses) > 0)
        {
            Interlocked.Decrement(ref _streamedApplies);
            return false;
        }
        return true;
    }

    /// <summary>Stops new streamed applies and waits (up to 10 s) for those under way; undo with <see cref="ResumeStreamedApplies"/>.</summary>
    private void PauseStreamedApplies()
    {
        Interlocked.Increment(ref _streamPauses);
        long deadline = Environment.TickCount64 + 10_000;
        while (Volatile.Read(ref _streamedApplies) > 0)
        {
            if (Environment.TickCount64 > deadline)
            {
                Interlocked.Decrement(ref _streamPauses);
                throw new IOException("a large push being applied piece by piece did not finish within 10 s");
            }
            Thread.Sleep(1);
        }
    }

    private void ResumeStreamedApplies() => Interlocked.Decrement(ref _streamPauses);

    internal void ExitStreamedApply() => Interlocked.Decrement(ref _streamedApplies);

    /// <summary>
    /// Copies the rows of the blocks <paramref name="include"/> selects while no push is applied here: pushes apply under
    /// the forward lock's read side, the copy takes its write side; large streamed pushes finish first.
    /// </summary>
    private List<CheckpointFiles.TableRows> Snapshot(IReadOnlyList<TableStore> tables, Func<TableStore, long, bool> include)
    {
        PauseStreamedApplies();
        try
        {
            _forwardOrder.EnterWriteLock();
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
                _forwardOrder.ExitWriteLock();
            }
        }
        finally
        {
            ResumeStreamedApplies();
        }
    }

    private string? _restoreFolder;
    private bool _restored;
    private long _checkpointsWritten;

    private void OnCheckpointRequest(long epoch, string folder) => _ = Task.Run(() =>
    {
        string path = Path.Combine(folder, CheckpointFiles.ServerFileName(Id));
        object result;
        try
        {
            var view = _view ?? throw new InvalidOperationException("no view yet");
            int mySlot = view.SlotOfServer(Id);
            var tables = _tables.OfType<TableStore>().ToList();
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var snapshot = Snapshot(tables, (table, block) => view.PlacementOf(table.Info).SlotOfBlock(block) == mySlot);
            var (bytes, sha, rows) = CheckpointFiles.WriteServerFile(path, Id, epoch, snapshot);
            Interlocked.Increment(ref _checkpointsWritten);
            _log.LogInformation("Server {Id}: wrote checkpoint epoch {Epoch}: {Rows} rows, {Bytes} bytes in {Ms:0} ms", Id, epoch, rows, bytes,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            result = new { ok = true, name = Path.GetFileName(path), bytes, sha256 = sha, rows };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            _log.LogError("Server {Id}: cannot write checkpoint epoch {Epoch} to {Path}: {Message}", Id, epoch, path, ex.Message);
            result = new { ok = false, error = $"server {Id} cannot write {path}: {ex.Message}" };
        }
        try
        {
            _scheduler?.Send(MessageType.CheckpointDone, JsonSerializer.SerializeToUtf8Bytes(result), round: epoch);
        }
        catch (PsException ex)
        {
            _log.LogWarning("Server {Id}: cannot report checkpoint epoch {Epoch}: {Message}", Id, epoch, ex.Message);
        }
    });

    /// <summary>On the first ready view after a Restore request: loads the rows this server holds under that view. Under _tablesLock.</summary>
    private void RestoreIfAsked(ClusterView view)
    {
        if (_restoreFolder is not { } folder || _restored || !view.Ready)
        {
            return;
        }
        _restored = true;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (_, manifest) = CheckpointFiles.Open(folder);
        int mySlot = view.SlotOfServer(Id);
        long loaded = 0;
        var tables = _tables;
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
        _log.LogInformation("Server {Id}: restored {Rows} rows from {Folder} (epoch {Epoch}) in {Ms:0} ms", Id, loaded, folder, manifest.Epoch,
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private static string Utf8(byte[] payload) => Encoding.UTF8.GetString(payload);
}
