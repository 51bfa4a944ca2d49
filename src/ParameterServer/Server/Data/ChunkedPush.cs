using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Protocol;
using ParameterServer.Server.Store;
using ParameterServer.Transport;

namespace ParameterServer.Server.Data;

/// <summary>
/// Applies a large push while it arrives: each piece the connection receives (a cache-sized chunk) is added to the
/// store at once, so the values cross memory once instead of being written to a frame-sized buffer and read back,
/// and the apply overlaps the rest of the transfer. Only for asynchronous tables whose handler updates each value
/// on its own (sum, SGD) and rows large enough that one lock per row slice is cheap; a concurrent pull of the same
/// row may see part of such a push, as it may see part of any multi-block push. The ack goes out after the last piece.
/// </summary>
internal sealed class ChunkedPush(DataRequests requests, ViewGate gate, Answers answers)
{
    /// <summary>Rows at least this long are applied in slices; shorter ones are received whole and applied in runs.</summary>
    private const int MinRowBytes = 16 << 10;

    private TableStore? _table;
    private ulong[] _keys = [];
    private int _keyCount;
    private int _width;
    private long _applied; // values applied so far
    private int _carried; // bytes of a value split between two pieces
    private uint _carry;
    private bool _checkFinite; // a float table: a NaN or infinity stops the push there
    private long _refusedAt; // the first value not finite (-1: none so far)
    private float _refusedValue;

    public bool TryBegin(Connection connection, in FrameHeader header, ReadOnlySpan<byte> first)
    {
        if (header.Type != MessageType.Push || header.RowWidth < MinRowBytes / sizeof(float) || (header.Flags & FrameFlags.Encoded) != 0)
        {
            return false;
        }
        bool range = (header.Flags & FrameFlags.KeyRange) != 0;
        long keyBytes = DataPayload.KeySectionBytes(header.KeyCount, range);
        if (keyBytes > first.Length || header.KeyCount <= 0)
        {
            return false;
        }
        // Anything wrong is answered by the whole-frame path, which reports it.
        if (requests.Check(connection, header, first, out var view, out var table, out var keys) is not null || table.Aggregator is not null || !table.AppliesSlices
            || view.ChainLength > 1) // replicated pushes are applied whole, once per (sender, id)
        {
            return false;
        }
        if (!gate.TryEnterStreamedApply())
        {
            return false; // a snapshot or a view change is under way: the whole-frame path applies this push under the lock
        }
        if (gate.Current != view)
        {
            gate.ExitStreamedApply(); // a view came in since the check: the whole-frame path checks again
            return false;
        }
        requests.CountRequest();
        _table = table;
        _width = table.Width;
        _keyCount = keys.Count;
        if (_keys.Length < _keyCount)
        {
            Return();
            _keys = ArrayPool<ulong>.Shared.Rent(_keyCount);
        }
        for (int i = 0; i < _keyCount; i++)
        {
            _keys[i] = keys[i];
        }
        _applied = 0;
        _carried = 0;
        _checkFinite = table.Info.Element == ElementType.Float32;
        _refusedAt = -1;
        Add(first[(int)keyBytes..]);
        return true;
    }

    public void Add(ReadOnlySpan<byte> chunk)
    {
        if (_carried > 0)
        {
            int take = Math.Min(sizeof(float) - _carried, chunk.Length);
            Span<byte> carry = MemoryMarshal.AsBytes(new Span<uint>(ref _carry));
            chunk[..take].CopyTo(carry[_carried..]);
            _carried += take;
            chunk = chunk[take..];
            if (_carried < sizeof(float))
            {
                return;
            }
            Apply(MemoryMarshal.Cast<byte, float>(carry));
            _carried = 0;
        }
        int whole = chunk.Length & ~(sizeof(float) - 1);
        Apply(MemoryMarshal.Cast<byte, float>(chunk[..whole]));
        if (whole < chunk.Length)
        {
            _carried = chunk.Length - whole;
            chunk[whole..].CopyTo(MemoryMarshal.AsBytes(new Span<uint>(ref _carry)));
        }
    }

    public void End(Connection connection, in FrameHeader header, bool received)
    {
        var table = _table;
        _table = null;
        if (table is not null)
        {
            gate.ExitStreamedApply();
        }
        if (received && table is not null && _refusedAt >= 0)
        {
            // The whole-frame path refuses such a push untouched; here its values before that one were applied as
            // they arrived. Our client refuses them before sending: this guards the table against any other sender.
            answers.SendError(connection, header, ErrorCode.InvalidArgument,
                $"push to table '{table.Info.Name}' holds {_refusedValue} at value {_refusedAt}: refused from there on (the {_refusedAt} values before it were applied as they arrived)");
        }
        else if (received && table is not null)
        {
            answers.SendAck(connection, header);
        }
    }

    private void Apply(ReadOnlySpan<float> values)
    {
        if (_refusedAt >= 0)
        {
            return;
        }
        if (_checkFinite && Extensions.Simd.IndexOfNonFinite(values) is int bad and >= 0)
        {
            _refusedAt = _applied + bad;
            _refusedValue = values[bad];
            values = values[..bad];
        }
        var table = _table!;
        while (!values.IsEmpty)
        {
            int keyIndex = (int)(_applied / _width);
            int offset = (int)(_applied % _width);
            int take = Math.Min(_width - offset, values.Length);
            table.ApplySlice(_keys[keyIndex], offset, values[..take]);
            _applied += take;
            values = values[take..];
        }
    }

    private void Return()
    {
        if (_keys.Length > 0)
        {
            ArrayPool<ulong>.Shared.Return(_keys);
        }
    }
}
