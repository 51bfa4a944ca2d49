using System.Text.Json;
using ParameterServer.Core.Checkpoints;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Scheduler.Membership;
using ParameterServer.Transport;

namespace ParameterServer.Scheduler;

/// <summary>
/// Checkpoint coordination: every interval (and once when all workers have finished) the scheduler asks each live
/// server to write its primary rows into a new epoch folder, and writes the manifest once all have answered. On
/// restore it verifies the checkpoint before the job starts, declares its tables and tells each server where it is.
/// </summary>
public sealed partial class SchedulerNode
{
    private readonly Dictionary<(long Epoch, int Node), TaskCompletionSource<JsonElement>> _checkpointReplies = new(); // under _lock
    private readonly SemaphoreSlim _checkpointing = new(1, 1);
    private string? _restoreFolder;
    private long _epoch;

    /// <summary>Epoch of the last complete checkpoint (0: none yet).</summary>
    internal long LastCheckpointEpoch { get; private set; }

    /// <summary>Verifies the checkpoint to restore and takes its tables; throws a clear error before anything starts.</summary>
    private void OpenRestore()
    {
        if (_options.RestoreFrom is { } from)
        {
            var (folder, manifest) = CheckpointFiles.Open(from);
            _restoreFolder = Path.GetFullPath(folder);
            _tables.AddRange(manifest.Tables);
            _epoch = manifest.Epoch;
            _log.LogRestoring(manifest.Epoch, _restoreFolder,
                manifest.Tables.Length, manifest.Files.Sum(f => f.Rows));
        }
        if (_options.CheckpointDirectory is { } root)
        {
            Directory.CreateDirectory(root);
            foreach (var dir in Directory.GetDirectories(root, "epoch-*"))
            {
                if (long.TryParse(Path.GetFileName(dir)["epoch-".Length..], out long e))
                {
                    _epoch = Math.Max(_epoch, e); // a resumed job numbers its checkpoints after the old ones
                }
            }
            if (_options.CheckpointInterval > TimeSpan.Zero)
            {
                _ = Task.Run(CheckpointLoopAsync);
            }
        }
    }

    /// <summary>Tells a new server which checkpoint to load (sent before any view, on the same connection).</summary>
    private void AddRestoreFrame(NodeState node, List<Outgoing> outbox)
    {
        if (_restoreFolder is { } folder && node.Role == NodeRole.Server)
        {
            outbox.Add(new Outgoing(node.Connection, new FrameHeader { Type = MessageType.Restore, SenderId = SchedulerId }, System.Text.Encoding.UTF8.GetBytes(folder)));
        }
    }

    private async Task CheckpointLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_options.CheckpointInterval, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            bool running;
            lock (_lock)
            {
                running = _ready && !_shuttingDown;
            }
            if (running)
            {
                await TakeCheckpointAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>One checkpoint: every live server writes its file, then the manifest is written. False (logged) when it could not complete.</summary>
    internal async Task<bool> TakeCheckpointAsync()
    {
        if (_options.CheckpointDirectory is not { } root)
        {
            return false;
        }
        await _checkpointing.WaitAsync().ConfigureAwait(false);
        try
        {
            long epoch = ++_epoch;
            string folder = Path.GetFullPath(CheckpointFiles.EpochFolder(root, epoch));
            try
            {
                Directory.CreateDirectory(folder);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _log.LogCheckpointFolderFailed(folder, ex.Message);
                return false;
            }
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var waits = new List<(NodeState Node, Task<JsonElement> Reply)>();
            var outbox = new List<Outgoing>();
            ClusterView view;
            TableInfo[] tables;
            lock (_lock)
            {
                view = _view;
                tables = _tables.ToArray();
                foreach (var server in _nodes.Values.Where(n => n.Role == NodeRole.Server && n.Alive))
                {
                    var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
                    _checkpointReplies[(epoch, server.Id)] = reply;
                    waits.Add((server, reply.Task));
                    outbox.Add(new Outgoing(server.Connection, new FrameHeader { Type = MessageType.Checkpoint, SenderId = SchedulerId, Round = epoch }, System.Text.Encoding.UTF8.GetBytes(folder)));
                }
            }
            Flush(outbox);
            var files = new List<CheckpointFileEntry>();
            string? failure = null;
            foreach (var (node, reply) in waits)
            {
                try
                {
                    var answer = await reply.WaitAsync(_options.ViewAckTimeout, _stop.Token).ConfigureAwait(false);
                    if (!answer.GetProperty("ok").GetBoolean())
                    {
                        failure ??= answer.GetProperty("error").GetString();
                        continue;
                    }
                    files.Add(new CheckpointFileEntry(answer.GetProperty("name").GetString()!, answer.GetProperty("bytes").GetInt64(),
                        answer.GetProperty("sha256").GetString()!, answer.GetProperty("rows").GetInt64()));
                }
                catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or PsException)
                {
                    failure ??= $"{node.Info.Describe()} did not write its part within {_options.ViewAckTimeout.TotalSeconds:0} s ({ex.Message})";
                }
                finally
                {
                    lock (_lock)
                    {
                        _checkpointReplies.Remove((epoch, node.Id));
                    }
                }
            }
            if (failure is not null)
            {
                _log.LogCheckpointIncomplete(epoch, failure);
                return false;
            }
            try
            {
                CheckpointFiles.WriteManifest(folder, new CheckpointManifest(1, epoch, view.Number, DateTime.UtcNow.ToString("O"), tables, files.ToArray()));
                if (LastCheckpointEpoch > 0)
                {
                    CheckpointFiles.DeleteOlder(root, LastCheckpointEpoch); // keep this one and the one before
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _log.LogManifestWriteFailed(epoch, folder, ex.Message);
                return false;
            }
            LastCheckpointEpoch = epoch;
            _log.LogCheckpointComplete(epoch, files.Sum(f => f.Rows), files.Count,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds, folder);
            return true;
        }
        finally
        {
            _checkpointing.Release();
        }
    }

    private void OnCheckpointDone(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (connection.Tag is NodeState node && _checkpointReplies.TryGetValue((header.Round, node.Id), out var reply))
        {
            reply.TrySetResult(JsonDocument.Parse(payload.ToArray()).RootElement.Clone());
        }
    }

    /// <summary>A server died: its part of a checkpoint in progress will not come.</summary>
    private void FailCheckpointWaits(NodeState node)
    {
        foreach (var ((_, id), reply) in _checkpointReplies)
        {
            if (id == node.Id)
            {
                reply.TrySetException(new PsException(PsErrorCode.ConnectionLost, $"{node.Info.Describe()} died"));
            }
        }
    }
}
