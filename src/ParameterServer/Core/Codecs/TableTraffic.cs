
namespace ParameterServer.Core.Codecs;

/// <summary>How a worker sends one table's calls: key caching, the value encoding, error feedback for lossy pushes.</summary>
internal sealed class TableTraffic
{
    /// <summary>Key lists shorter than this are sent as they are: a signature would save too little.</summary>
    public const int MinCachedKeys = 4;

    public TableTraffic(bool keyCaching, CodecSpec codec, int width)
    {
        KeyCaching = keyCaching;
        Codec = codec;
        AnswerByte = codec.ToAnswerByte();
        Residuals = codec.IsLossy ? new ErrorFeedback(width) : null;
    }

    public bool KeyCaching { get; }

    public CodecSpec Codec { get; }

    /// <summary>What pulls ask their answers to be encoded with (zero suppression, lz, fp16 or bf16 of <see cref="Codec"/>).</summary>
    public byte AnswerByte { get; }

    /// <summary>What lossy encoding left out of earlier pushes, added to the next push of the same key (BytePS-style error feedback).</summary>
    public ErrorFeedback? Residuals { get; }

    public bool Active => KeyCaching || !Codec.IsNone;
}

/// <summary>Per key residuals of a lossy push encoding: what was meant minus what was sent, carried into the next push. Thread safe.</summary>
internal sealed class ErrorFeedback(int width)
{
    private readonly Dictionary<ulong, int> _slots = new();
    private float[] _residual = new float[1024 * width];
    private int _used;

    /// <summary>values[i] += residual of key i: keys[i], or rangeFirst + i when <paramref name="keys"/> is empty (a range).</summary>
    public void AddTo(ReadOnlySpan<ulong> keys, ulong rangeFirst, int count, Span<float> values)
    {
        lock (_slots)
        {
            for (int i = 0; i < count; i++)
            {
                if (_slots.TryGetValue(keys.IsEmpty ? rangeFirst + (ulong)i : keys[i], out int slot))
                {
                    var residual = _residual.AsSpan(slot, width);
                    var row = values.Slice(i * width, width);
                    for (int j = 0; j < width; j++)
                    {
                        row[j] += residual[j];
                    }
                }
            }
        }
    }

    /// <summary>Remembers intended - sent for every key.</summary>
    public void Keep(ReadOnlySpan<ulong> keys, ulong rangeFirst, int count, ReadOnlySpan<float> intended, ReadOnlySpan<float> sent)
    {
        lock (_slots)
        {
            for (int i = 0; i < count; i++)
            {
                ulong key = keys.IsEmpty ? rangeFirst + (ulong)i : keys[i];
                if (!_slots.TryGetValue(key, out int slot))
                {
                    slot = _used;
                    _used += width;
                    if (_used > _residual.Length)
                    {
                        Array.Resize(ref _residual, Math.Max(_residual.Length * 2, _used));
                    }
                    _slots[key] = slot;
                }
                var residual = _residual.AsSpan(slot, width);
                for (int j = 0; j < width; j++)
                {
                    residual[j] = intended[(i * width) + j] - sent[(i * width) + j];
                }
            }
        }
    }

    /// <summary>The residual now held for a key (tests).</summary>
    public float[] Of(ulong key)
    {
        lock (_slots)
        {
            return _slots.TryGetValue(key, out int slot) ? _residual.AsSpan(slot, width).ToArray() : new float[width];
        }
    }
}
