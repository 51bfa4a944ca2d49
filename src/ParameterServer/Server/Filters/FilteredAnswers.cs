using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Core.Codecs;
using ParameterServer.Extensions;
using ParameterServer.Protocol;
using ParameterServer.Transport;
using ParameterServer.Server.Store;
using ParameterServer.Server.Sessions;

namespace ParameterServer.Server.Filters;

/// <summary>
/// Pull answers through the table's filter (FrameFlags.FilterAnswer): rows the worker already holds closely enough
/// are left out, against what this connection was last sent (kept per session, bounded by ServerOptions.PullFilterBytes).
/// </summary>
internal sealed class FilteredAnswers(LocalServer self, Answers answers)
{
    private readonly LocalServer _self = self;
    private readonly Answers _answers = answers;
    private long _pullRowsSkipped;
    private long _pullRowsFiltered;

    /// <summary>Rows answered through a filter, and of them those left out.</summary>
    public (long Rows, long LeftOut) Counts => (Interlocked.Read(ref _pullRowsFiltered), Interlocked.Read(ref _pullRowsSkipped));

    /// <summary>
    /// Answers a pull through the table's filter, against the rows this connection was last sent. Filtering, remembering
    /// what is sent and queueing the frame happen under one lock, so the worker (which updates its copy as answers
    /// arrive, in order) holds exactly what this side remembers.
    /// </summary>
    public void SendFilteredValues(Connection connection, in FrameHeader request, TableStore table, KeyList keys, IPullFilter filter, Session peer)
    {
        int count = keys.Count;
        int width = table.Width;
        int valueCount = count * width;
        bool refresh = request.Aux == 1;
        var keyArray = ArrayPool<ulong>.Shared.Rent(Math.Max(count, 1));
        var rows = ArrayPool<float>.Shared.Rent(Math.Max(valueCount, 1));
        var lastSent = ArrayPool<float>.Shared.Rent(Math.Max(valueCount, 1));
        var keep = ArrayPool<bool>.Shared.Rent(Math.Max(count, 1));
        var known = ArrayPool<bool>.Shared.Rent(Math.Max(count, 1));
        var codec = request.AnswerCodec != 0 ? CodecSpec.FromAnswerByte(request.AnswerCodec) : CodecSpec.None;
        int maskBytes = 8 + ((count + 63) / 64 * 8);
        var section = ArrayPool<byte>.Shared.Rent(maskBytes + (codec.IsNone ? valueCount * sizeof(float) : ValueCodec.MaxEncodedBytes(valueCount, width)) + 8);
        try
        {
            var keySpan = keyArray.AsSpan(0, count);
            for (int i = 0; i < count; i++)
            {
                keySpan[i] = keys[i];
            }
            var current = rows.AsSpan(0, valueCount);
            table.Read(keys, current);
            var before = lastSent.AsSpan(0, valueCount);
            var flags = keep.AsSpan(0, count);
            var seen = known.AsSpan(0, count);
            RowMemory memory;
            lock (peer.PulledRows)
            {
                if (!peer.PulledRows.TryGetValue(table.Info.Id, out memory!))
                {
                    peer.PulledRows[table.Info.Id] = memory = new RowMemory(width, _self.Options.PullFilterBytes);
                }
            }
            lock (memory)
            {
                for (int i = 0; i < count; i++)
                {
                    seen[i] = memory.TryGet(keySpan[i], out var row);
                    if (seen[i])
                    {
                        row.CopyTo(before.Slice(i * width, width));
                    }
                    else
                    {
                        before.Slice(i * width, width).Clear();
                    }
                }
                flags.Fill(true);
                if (!refresh)
                {
                    try
                    {
                        filter.Filter(keySpan, current, before, width, flags);
                    }
                    catch (Exception ex)
                    {
                        _answers.SendError(connection, request, ErrorCode.Internal, $"pull filter '{table.Info.PullFilter}' of table '{table.Info.Name}' failed on server {_self.Id}: {ex.Message}");
                        return;
                    }
                }
                // Build the answer: the mask, then the kept rows (compacted in place), encoded as the pull asked.
                var mask = section.AsSpan(0, maskBytes);
                mask.Clear();
                var bitmap = MemoryMarshal.Cast<byte, ulong>(mask[8..]);
                int present = 0;
                for (int i = 0; i < count; i++)
                {
                    if (!flags[i] && seen[i])
                    {
                        continue; // left out: the worker holds what this side remembers
                    }
                    var row = current.Slice(i * width, width);
                    memory.Set(keySpan[i], row); // when full, an unremembered key is simply sent every time
                    bitmap[i >> 6] |= 1UL << (i & 63);
                    if (present != i)
                    {
                        row.CopyTo(current[(present * width)..]);
                    }
                    present++;
                }
                MemoryMarshal.Write(mask, present);
                var kept = current[..(present * width)];
                var header = _answers.ResponseTo(request);
                header.KeyCount = count;
                header.RowWidth = width;
                header.Flags |= FrameFlags.FilterAnswer;
                int valueBytes;
                var values = section.AsSpan(maskBytes);
                if (!codec.IsNone && present > 0)
                {
                    valueBytes = ValueCodec.Encode(codec, kept, width, values);
                    header.Flags |= FrameFlags.Compressed;
                }
                else
                {
                    MemoryMarshal.AsBytes(kept).CopyTo(values);
                    valueBytes = kept.Length * sizeof(float);
                }
                int padded = (valueBytes + 7) & ~7;
                values[valueBytes..padded].Clear();
                header.PayloadLength = maskBytes + padded;
                using var frame = connection.Reserve(header.FrameLength);
                header.Write(frame.Span);
                section.AsSpan(0, header.PayloadLength).CopyTo(frame.Span[FrameHeader.Size..]);
                frame.Commit();
                Interlocked.Add(ref _pullRowsFiltered, count);
                Interlocked.Add(ref _pullRowsSkipped, count - present);
            }
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(keyArray);
            ArrayPool<float>.Shared.Return(rows);
            ArrayPool<float>.Shared.Return(lastSent);
            ArrayPool<bool>.Shared.Return(keep);
            ArrayPool<bool>.Shared.Return(known);
            ArrayPool<byte>.Shared.Return(section);
        }
    }
}
