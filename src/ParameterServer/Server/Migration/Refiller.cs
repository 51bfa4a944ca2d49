using System.Runtime.InteropServices;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Server.Store;
using ParameterServer.Server.Replication;

namespace ParameterServer.Server.Migration;

/// <summary>
/// Copies after membership changes: when a view adds a member to the chain of a block this server is primary for
/// (a replica lost with a server is replaced by the next one on the ring; a migration moves a range), the block is
/// copied to it in the background, then the scheduler hears this server's part is done; a new copy takes blocks in;
/// once a migration has switched owners, the blocks that moved away are dropped.
/// </summary>
internal sealed class Refiller(LocalServer self, ViewGate gate, TableSet tables, PeerLinks links, Action<uint> reportRefilled)
{
    private readonly LocalServer _self = self;
    private readonly ViewGate _gate = gate;
    private readonly TableSet _tables = tables;
    private readonly PeerLinks _links = links;
    private readonly Lock _refillLock = new();
    private Task _refills = Task.CompletedTask;
    private long _refillBlocksSent;
    private long _refillBlocksReceived;

    public long BlocksSent => Interlocked.Read(ref _refillBlocksSent);

    public long BlocksReceived => Interlocked.Read(ref _refillBlocksReceived);

    /// <summary>
    /// After a view change, copies every block this server is now primary for to the members of its chain that were
    /// not in it before (a replica lost with a server is replaced by the next one on the ring), in the background.
    /// Each block is copied under the update gate, so pushes forwarded before the copy come before it on the
    /// connection and those applied after it are forwarded after it.
    /// </summary>
    public void StartRefill(ClusterView previous, ClusterView view)
    {
        if (view.ChainLength <= 1)
        {
            return;
        }
        lock (_refillLock)
        {
            // One view after the other: the scheduler reads "refilled for view V" as "and for every view before it".
            _refills = _refills.ContinueWith(_ =>
            {
                try
                {
                    Refill(previous, view);
                }
                catch (Exception ex) when (ex is TransportException or PsException)
                {
                    _self.Log.LogRefillStopped(_self.Id, view.Number, ex.Message);
                }
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    private void Refill(ClusterView previous, ClusterView view)
    {
        // A push the lost server forwarded here may still sit in this server's receive buffer: apply it before copying
        // blocks, or a new replica's copy would lack it while this server has it.
        var lost = previous.Servers.Select(s => s.Id).Where(id => view.SlotOfServer(id) < 0 && !view.Nodes.Any(n => n.Id == id && n.Left)).ToHashSet();
        _links.WaitInboundClosed(lost);
        _gate.WaitReplicaApplies(); // a forward from a lost server checked under an older view is applied before any copy
        int mySlot = view.SlotOfServer(_self.Id);
        if (mySlot < 0)
        {
            return;
        }
        long blocksSent = 0;
        var copiedTo = new HashSet<NodeInfo>();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var keys = new List<ulong>();
        var rows = new List<float>();
        foreach (var table in _tables.All)
        {
            if (table is null || previous.FindTable(table.Info.Id) is null)
            {
                continue; // a table new in this view has nothing to copy
            }
            var placement = view.PlacementOf(table.Info);
            var oldPlacement = previous.PlacementOf(table.Info);
            Span<int> chain = stackalloc int[placement.ChainLength];
            Span<int> oldChain = stackalloc int[Math.Max(1, oldPlacement.ChainLength)];
            foreach (long block in table.StoredBlocks())
            {
                int n = placement.ChainOfBlock(block, chain);
                if (n == 0 || chain[0] != mySlot)
                {
                    continue;
                }
                int oldN = oldPlacement.ChainOfBlock(block, oldChain);
                for (int j = 1; j < n; j++)
                {
                    var member = view.Servers[chain[j]];
                    int oldSlotOfMember = previous.SlotOfServer(member.Id);
                    if (oldSlotOfMember >= 0 && oldChain[..oldN].Contains(oldSlotOfMember))
                    {
                        continue; // it has the block already
                    }
                    CopyBlock(table, block, member, keys, rows);
                    copiedTo.Add(member);
                    blocksSent++;
                }
            }
        }
        // Each new copy confirms it applied everything sent before (frames on one connection are handled in order),
        // then the scheduler hears that this server's part of restoring the copies for this view is done.
        foreach (var member in copiedTo)
        {
            _links.ConfirmApplied(member);
        }
        try
        {
            reportRefilled(view.Number);
        }
        catch (PsException)
        {
        }
        if (blocksSent > 0)
        {
            Interlocked.Add(ref _refillBlocksSent, blocksSent);
            _self.Log.LogReplicasRefilled(_self.Id, blocksSent, view.Number,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    /// <summary>Sends one block to a new replica: the copy and the frames carrying it are made under the update gate.</summary>
    private void CopyBlock(TableStore table, long block, NodeInfo member, List<ulong> keys, List<float> rows)
    {
        if (!_self.Lease.IsHeld(out long lapsedMs))
        {
            // This server may have been declared dead meanwhile (frozen, cut off): its blocks are someone else's now.
            throw new PsException(PsErrorCode.ShuttingDown, $"the scheduler's lease ended {lapsedMs} ms ago");
        }
        var peer = _links.GetPeer(member);
        int stride = table.RowStride;
        int rowBytes = sizeof(ulong) + (stride * sizeof(float));
        int rowsPerFrame = Math.Max(1, Math.Min(1 << 20, _self.Options.Transport.MaxFrameBytes - FrameHeader.Size) / rowBytes);
        _gate.EnterExclusive();
        try
        {
            keys.Clear();
            rows.Clear();
            table.SnapshotBlock(block, keys, rows);
            int sent = 0;
            do
            {
                int count = Math.Min(rowsPerFrame, keys.Count - sent);
                var header = new FrameHeader
                {
                    Type = MessageType.Refill,
                    SenderId = _self.Id,
                    TableId = table.Info.Id,
                    KeyCount = count,
                    RowWidth = stride,
                    ElementType = table.Info.ElementType,
                    Round = block,
                    Timestamp = sent == 0 ? 1 : 0,
                    ViewNumber = _gate.Current?.Number ?? 0,
                    PayloadLength = count * rowBytes,
                };
                using var frame = peer.Connection.Reserve(header.FrameLength);
                header.Write(frame.Span);
                var keyOut = MemoryMarshal.Cast<byte, ulong>(frame.Span.Slice(FrameHeader.Size, count * sizeof(ulong)));
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(keys).Slice(sent, count).CopyTo(keyOut);
                var rowOut = MemoryMarshal.Cast<byte, float>(frame.Span[(FrameHeader.Size + (count * sizeof(ulong)))..]);
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(rows).Slice(sent * stride, count * stride).CopyTo(rowOut);
                frame.Commit();
                sent += count;
            }
            while (sent < keys.Count);
        }
        finally
        {
            _gate.ExitExclusive();
        }
    }

    /// <summary>A new replica receives a block from its primary: the block is replaced by the copy.</summary>
    public void HandleRefill(in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        var table = _tables.FromPeer(header.TableId);
        if (table is null || header.RowWidth != table.RowStride || DataPayload.Validate(header) is { } problem && problem.Length > 0)
        {
            _self.Log.LogMalformedRefillIgnored(_self.Id, header.TableId, header.SenderId);
            return;
        }
        if (_gate.Current is { } current && current.IsDeclaredDead(header.SenderId))
        {
            // A server declared dead (frozen, cut off) may go on copying once it runs again: its copy is stale, and
            // would wipe what the block's new primary has sent here since.
            _self.Log.LogRefillIgnored(_self.Id, header.SenderId, $"it copied block {header.Round} under view {header.ViewNumber}, but view {current.Number} declares it dead");
            return;
        }
        var keys = DataPayload.Keys(header, payload);
        try
        {
            table.WriteBlockRows(header.Round, keys, MemoryMarshal.Cast<byte, float>(DataPayload.Values(header, payload)), clearFirst: header.Timestamp == 1);
        }
        catch (ArgumentException ex)
        {
            _self.Log.LogRefillIgnored(_self.Id, header.SenderId, ex.Message);
            return;
        }
        if (header.Timestamp == 1)
        {
            Interlocked.Increment(ref _refillBlocksReceived);
        }
    }

    /// <summary>
    /// After a migration switched owners, forgets the blocks this server no longer holds (chains only lose members
    /// when ranges move, never when a server dies). Under the write side of the update gate: no push is applied meanwhile.
    /// </summary>
    public void DropMovedBlocks(ClusterView view, TableStore?[] tables)
    {
        int mySlot = view.SlotOfServer(_self.Id);
        if (mySlot < 0)
        {
            return;
        }
        long dropped = 0;
        _gate.EnterExclusive();
        try
        {
            foreach (var table in tables)
            {
                if (table is null || view.FindTable(table.Info.Id) is null)
                {
                    continue;
                }
                var placement = view.PlacementOf(table.Info);
                Span<int> chain = stackalloc int[Math.Max(1, placement.ChainLength)];
                foreach (long block in table.StoredBlocks())
                {
                    int n = placement.ChainOfBlock(block, chain);
                    if (!chain[..n].Contains(mySlot))
                    {
                        table.DropBlock(block);
                        dropped++;
                    }
                }
            }
        }
        finally
        {
            _gate.ExitExclusive();
        }
        if (dropped > 0)
        {
            _self.Log.LogMovedBlocksDropped(_self.Id, dropped, view.Number);
        }
    }
}
