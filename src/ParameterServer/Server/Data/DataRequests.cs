using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Server.Filters;
using ParameterServer.Server.Replication;
using ParameterServer.Server.Sessions;
using ParameterServer.Server.Store;
using ParameterServer.Server.Sync;
using ParameterServer.Transport;

namespace ParameterServer.Server.Data;

/// <summary>
/// The data plane: checks a worker's push, pull or push-pull against the view and the table, decodes encoded frames,
/// and serves it: pulls from the store (or through the table's pull filter), pushes applied here, joined to their sync
/// round, or applied and forwarded down their chain. Also serves scans (a table's rows, for tools).
/// </summary>
internal sealed class DataRequests(LocalServer self, ViewGate gate, Answers answers, TableSet tables, ChainReplicator replication, SyncRounds sync, FilteredAnswers filtered)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;
    private readonly Answers _answers = answers;
    private readonly TableSet _tables = tables;
    private readonly ChainReplicator _replication = replication;
    private readonly SyncRounds _sync = sync;
    private readonly FilteredAnswers _filtered = filtered;
    private long _requests;

    /// <summary>Frames received from workers and peers.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    public void CountRequest() => Interlocked.Increment(ref _requests);

    /// <summary>
    /// Checks a data request against the view and the table (the payload needs only its key section). Returns what is
    /// wrong, or null with the view, table and keys to serve it.
    /// </summary>
    public (ErrorCode Code, string Message)? Check(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, out ClusterView view, out TableStore table, out KeyList keys)
    {
        table = _tables.ForRequest(header, out view)!;
        keys = default;
        if (view is null || table is null)
        {
            string why = _tables.WhyMissing(header.TableId);
            return (ErrorCode.UnknownTable, $"server {_self.Id} has no table {header.TableId}: {why}");
        }
        if (Fenced(header, view) is { } fenced)
        {
            return fenced;
        }
        if (header.RowWidth != table.Width)
        {
            return (ErrorCode.WrongWidth, $"table '{table.Info.Name}' has rows of width {table.Width}, the request has width {header.RowWidth}");
        }
        if (header.ElementType != table.Info.ElementType)
        {
            return (ErrorCode.WrongElementType, $"table '{table.Info.Name}' holds {table.Info.ElementType}, the request carries {header.ElementType}");
        }
        if (DataPayload.Validate(header) is { } malformed)
        {
            return (ErrorCode.MalformedPayload, malformed);
        }
        keys = DataPayload.Keys(header, payload);
        int unsorted = keys.FindUnsorted();
        if (unsorted >= 0)
        {
            return (ErrorCode.KeysNotSorted, $"keys must be sorted ascending without duplicates: key[{unsorted}] = {keys[unsorted]} follows {keys[unsorted - 1]}");
        }
        if (table.Info.IsDense && keys.Count > 0 && keys[keys.Count - 1] >= table.Info.DenseSize)
        {
            return (ErrorCode.KeyOutOfRange, $"key {keys[keys.Count - 1]} is outside dense table '{table.Info.Name}' of size {table.Info.DenseSize}");
        }
        if (ViewGate.OwnerProblem(view, _self.Id, table, keys) is { } notMine)
        {
            return notMine;
        }
        long answerLength = FrameHeader.Size + (header.Type == MessageType.Push ? 0 : (long)keys.Count * table.Width * sizeof(float))
            + ((header.Flags & FrameFlags.FilterAnswer) != 0 ? 8 + ((keys.Count + 63L) / 64 * 8) : 0); // a filtered answer's mask
        if (answerLength > connection.MaxFrameBytes)
        {
            return (ErrorCode.InvalidArgument, $"the answer would be {answerLength} bytes, over MaxFrameBytes ({connection.MaxFrameBytes}); pull fewer keys per call");
        }
        return null;
    }

    /// <summary>
    /// Fencing: a server past its lease may have been declared dead, and a worker the view declares dead was replaced;
    /// neither may change or read parameters. The server's refusal (WrongOwner, applied nowhere) sends the worker to the
    /// keys' owners under the next view; a dead worker's calls fail.
    /// </summary>
    private (ErrorCode Code, string Message)? Fenced(in FrameHeader header, ClusterView view)
    {
        if (!_self.Lease.IsHeld(out long lapsedMs))
        {
            if (_self.Lease.FirstRefusal())
            {
                _self.Log.LogLeaseLapsed(_self.Id, lapsedMs);
            }
            return (ErrorCode.WrongOwner, $"server {_self.Id} has not heard from the scheduler in time (its lease ended {lapsedMs} ms ago): it may have been declared dead and serves nothing until the scheduler answers");
        }
        if (view.IsDeclaredDead(header.SenderId))
        {
            return (ErrorCode.Conflict, $"node {header.SenderId} was declared dead in view {view.Number}: its calls are refused; start it again (with --join)");
        }
        return null;
    }

    /// <summary>Decodes a frame with cached keys or encoded values, then serves it as the plain frame it stands for.</summary>
    public void HandleEncoded(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload, ReceiverKeyCache keys)
    {
        switch (WireEncoding.Decode(header, payload, keys, connection.MaxFrameBytes, out var plainHeader, out var plain, out string? problem))
        {
            case WireEncoding.DecodeResult.Miss:
                _answers.SendError(connection, header, ErrorCode.KeyCacheMiss, $"server {_self.Id} holds no key list with this signature from {connection.Peer} (evicted or never sent): send the keys");
                return;
            case WireEncoding.DecodeResult.Malformed:
                _answers.SendError(connection, header, ErrorCode.MalformedPayload, problem!);
                return;
        }
        // Forwards to replicas made while serving it are encoded alike (losslessly: see ForwardCodec).
        ReplicaFrames.t_forwardCodec = ReplicaFrames.ForwardCodec(header, payload);
        try
        {
            HandleData(connection, plainHeader, plain.AsSpan(FrameHeader.Size, plainHeader.PayloadLength));
        }
        finally
        {
            ReplicaFrames.t_forwardCodec = null;
            ArrayPool<byte>.Shared.Return(plain!);
        }
    }

    public void HandleData(Connection connection, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (Check(connection, header, payload, out var view, out var table, out var keys) is { } problem)
        {
            _answers.SendError(connection, header, problem.Code, problem.Message);
            return;
        }
        var values = MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload));
        if (header.Type == MessageType.Pull)
        {
            if ((header.Flags & FrameFlags.FilterAnswer) != 0 && table.PullFilter is { } filter && connection.Tag is Session peer)
            {
                _filtered.SendFilteredValues(connection, header, table, keys, filter, peer);
            }
            else
            {
                _answers.SendValues(connection, header, table, keys);
            }
            return;
        }
        if (table.Info.Element == ElementType.Float32 && Extensions.Simd.IndexOfNonFinite(values) is int bad and >= 0)
        {
            // Our client refuses these before sending; this guards the table against any other sender.
            _answers.SendError(connection, header, ErrorCode.InvalidArgument,
                $"server {_self.Id}: push to table '{table.Info.Name}' holds {values[bad]} at value {bad}: refused, the table is unchanged");
            return;
        }
        if (table.Aggregator is { } aggregator && (header.Flags & FrameFlags.Resend) != 0)
        {
            _sync.HandleSyncResend(connection, header, view, table, aggregator, keys, values);
            return;
        }
        bool late = false;
        bool deferred = false;
        (ErrorCode Code, string Message)? moved = null;
        // Applying (and forwarding) happens under the newest view: views are installed under the write side of this
        // lock, so a push checked under an older view is checked again here. Otherwise a server could apply a push to
        // keys that moved away (or not forward it to a copy a migration just added) after the switch, and lose it.
        _gate.EnterApply();
        try
        {
            var current = _gate.Current!;
            if (current != view && ViewGate.OwnerProblem(current, _self.Id, table, keys) is { } notMine)
            {
                moved = notMine;
            }
            else if (table.Aggregator is { } sync)
            {
                // A round completing here is applied and forwarded here, under the view it was checked by.
                _sync.Add(connection, header, table, sync, keys, values, out late);
                if (late)
                {
                    // Its round was applied here already (the push was refused by a server that handed its keys
                    // over and sent again): applied on its own, still under this view.
                    if (current.ChainLength > 1)
                    {
                        deferred = _replication.ApplyAndForward(connection, header, table, keys, values);
                    }
                    else
                    {
                        table.Apply(keys, values);
                    }
                }
            }
            else if (current.ChainLength > 1)
            {
                deferred = _replication.ApplyAndForward(connection, header, table, keys, values);
            }
            else
            {
                table.Apply(keys, values);
            }
        }
        finally
        {
            _gate.ExitApply();
        }
        if (moved is { } refusal)
        {
            _answers.SendError(connection, header, refusal.Code, refusal.Message);
            return;
        }
        if (table.Aggregator is not null && !late)
        {
            return; // acknowledged with its round
        }
        if (deferred)
        {
            return; // acknowledged when the replicas have it
        }
        if (header.Type == MessageType.PushPull)
        {
            _answers.SendValues(connection, header, table, keys);
        }
        else
        {
            _answers.SendAck(connection, header);
        }
    }

    public void HandleScan(Connection connection, in FrameHeader header)
    {
        var table = _tables.Get(header.TableId);
        if (table is null)
        {
            _answers.SendError(connection, header, ErrorCode.UnknownTable, $"server {_self.Id} has no table {header.TableId}");
            return;
        }
        int rowBytes = sizeof(ulong) + table.Width * sizeof(float);
        int maxRows = (int)Math.Clamp((Math.Min(connection.MaxFrameBytes, 64 << 20) - FrameHeader.Size) / rowBytes, 1, 1 << 22);
        var keys = new List<ulong>();
        var values = new List<float>();
        // Only the blocks this server is primary for: replicas would list every row once per copy, and a server
        // keeps the rows of blocks that moved away from it.
        var view = _gate.Current;
        Func<long, bool>? primary = null;
        if (view is not null && !view.Ring.IsEmpty)
        {
            var placement = view.PlacementOf(table.Info);
            int mySlot = view.SlotOfServer(_self.Id);
            primary = block => placement.SlotOfBlock(block) == mySlot;
        }
        var (rows, next) = table.Scan(Math.Max(0, header.Round), maxRows, keys, values, primary);
        if ((long)rows * rowBytes + FrameHeader.Size > connection.MaxFrameBytes)
        {
            _answers.SendError(connection, header, ErrorCode.InvalidArgument, $"one block of table '{table.Info.Name}' holds {rows} rows, more than a frame can carry (MaxFrameBytes {connection.MaxFrameBytes})");
            return;
        }
        var response = _answers.ResponseTo(header);
        response.KeyCount = rows;
        response.RowWidth = table.Width;
        response.Round = next;
        var payload = new byte[(long)rows * rowBytes];
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(keys)).CopyTo(payload);
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(values)).CopyTo(payload.AsSpan(rows * sizeof(ulong)));
        connection.Send(response, payload);
    }
}
