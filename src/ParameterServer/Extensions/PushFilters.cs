namespace ParameterServer.Extensions;

/// <summary>
/// Decides which entries of a push are worth sending (the paper's user-defined filters). It runs on the pushing
/// thread, before the call is cut by server, on a copy of the call's values that it may rewrite. Entries whose
/// <c>keep</c> flag it clears are not sent at all: the servers never see them.
/// </summary>
public interface IPushFilter
{
    /// <param name="keys">The call's keys, sorted.</param>
    /// <param name="values">keys.Length x <paramref name="width"/> values; the filter may change them (what is kept is sent as changed).</param>
    /// <param name="width">Values per key.</param>
    /// <param name="keep">One flag per key, all true on entry.</param>
    void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep);
}

/// <summary>The built-in filters, and the parser for their command-line names.</summary>
public static class PushFilters
{
    /// <summary>The names known without registration.</summary>
    internal static IReadOnlyList<string> BuiltInNames { get; } = ["none", "sigmod", "random", "kkt"];

    /// <summary>Parses "none", "sigmod:THRESHOLD", "random:P" or "kkt" (kkt needs the app's weights: <see cref="KktFilter"/>).</summary>
    public static IPushFilter? Parse(string spec, Func<KktFilter>? kkt = null)
    {
        string[] parts = spec.Split(':', 2);
        string name = parts[0].Trim().ToLowerInvariant();
        float Number(string what)
        {
            if (parts.Length < 2 || !float.TryParse(parts[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float value) || value < 0)
            {
                throw new ArgumentException($"filter '{spec}': {name} takes {what}, as in {name}:0.01");
            }
            return value;
        }
        return name switch
        {
            "none" or "" => null,
            "sigmod" => new SignificantlyModifiedFilter(Number("a threshold")),
            "random" => new RandomSkipFilter(Number("a skip probability in [0, 1)")),
            "kkt" => kkt?.Invoke() ?? throw new ArgumentException($"filter '{spec}': kkt needs the model's weights, which only an app such as logreg can give"),
            _ => throw new ArgumentException($"filter '{spec}': unknown filter '{parts[0]}' (use none, kkt, sigmod:THRESHOLD or random:P)"),
        };
    }
}

/// <summary>
/// Sends an entry only once it has changed by more than a threshold since it was last sent: pushes of one key
/// accumulate here until their sum exceeds the threshold in magnitude, and then that sum is sent. Nothing is lost,
/// only delayed (what is held back is at most the threshold per value).
/// </summary>
public sealed class SignificantlyModifiedFilter(float threshold) : IPushFilter
{
    private readonly Dictionary<ulong, int> _slots = new();
    private float[] _pending = new float[1024];
    private int _used;

    public float Threshold { get; } = threshold;

    public void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep)
    {
        lock (_slots)
        {
            for (int i = 0; i < keys.Length; i++)
            {
                if (!_slots.TryGetValue(keys[i], out int slot))
                {
                    slot = _used;
                    _used += width;
                    if (_used > _pending.Length)
                    {
                        Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _used));
                    }
                    _slots[keys[i]] = slot;
                }
                var pending = _pending.AsSpan(slot, width);
                var row = values.Slice(i * width, width);
                bool significant = false;
                for (int j = 0; j < width; j++)
                {
                    pending[j] += row[j];
                    significant |= MathF.Abs(pending[j]) > Threshold;
                }
                if (significant)
                {
                    pending.CopyTo(row);
                    pending.Clear();
                }
                else
                {
                    keep[i] = false;
                }
            }
        }
    }
}

/// <summary>Skips each entry with probability P and scales the kept ones by 1 / (1 - P), so the expected push is unchanged.</summary>
public sealed class RandomSkipFilter : IPushFilter
{
    private readonly Random _random;

    public RandomSkipFilter(float probability, int seed = 12345)
    {
        if (probability is < 0 or >= 1)
        {
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "the skip probability must be in [0, 1)");
        }
        Probability = probability;
        _random = new Random(seed);
    }

    public float Probability { get; }

    public void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep)
    {
        float scale = 1 / (1 - Probability);
        lock (_random)
        {
            for (int i = 0; i < keys.Length; i++)
            {
                if (_random.NextSingle() < Probability)
                {
                    keep[i] = false;
                    continue;
                }
                foreach (ref float v in values.Slice(i * width, width))
                {
                    v *= scale;
                }
            }
        }
    }
}

/// <summary>
/// The KKT filter for L1-regularised models (the paper's section 5.1): a feature whose weight is zero stays zero
/// unless its gradient exceeds the L1 penalty, so such gradients are not sent. Minibatch gradients are noisy, so a
/// held-back gradient is not dropped: it is added to the key's next gradient, and the sum is sent once it exceeds the
/// penalty or the weight is no longer zero (the server's accumulated gradient then misses at most lambda per key).
/// The app tells the filter the current weights of the keys it is about to push (<see cref="SetWeights"/>, aligned with
/// the push's keys); without them, or when they do not match the push, everything is sent.
/// </summary>
public sealed class KktFilter(float lambda) : IPushFilter
{
    [ThreadStatic]
    private static float[]? t_weights;

    [ThreadStatic]
    private static int t_count;

    private readonly Dictionary<ulong, int> _slots = new();
    private float[] _heldBack = new float[1024];
    private int _used;

    /// <summary>The L1 penalty: gradients of zero weights at most this large in magnitude are held back.</summary>
    public float Lambda { get; } = lambda;

    /// <summary>The weights of the keys of this thread's next push, in the push's key order (copied).</summary>
    public static void SetWeights(ReadOnlySpan<float> weights)
    {
        if (t_weights is null || t_weights.Length < weights.Length)
        {
            t_weights = new float[Math.Max(weights.Length, 1024)];
        }
        weights.CopyTo(t_weights);
        t_count = weights.Length;
    }

    public void Filter(ReadOnlySpan<ulong> keys, Span<float> values, int width, Span<bool> keep)
    {
        var weights = t_weights;
        if (weights is null || t_count != keys.Length * width)
        {
            return;
        }
        t_count = -1; // used once: a later push without fresh weights sends everything
        lock (_slots)
        {
            for (int i = 0; i < keys.Length; i++)
            {
                var row = values.Slice(i * width, width);
                bool known = _slots.TryGetValue(keys[i], out int slot);
                if (known)
                {
                    var held = _heldBack.AsSpan(slot, width);
                    for (int j = 0; j < width; j++)
                    {
                        row[j] += held[j];
                    }
                }
                bool zeroAndSmall = true;
                for (int j = 0; j < width && zeroAndSmall; j++)
                {
                    zeroAndSmall = weights[(i * width) + j] == 0 && MathF.Abs(row[j]) <= Lambda;
                }
                if (zeroAndSmall)
                {
                    if (!known)
                    {
                        slot = _used;
                        _used += width;
                        if (_used > _heldBack.Length)
                        {
                            Array.Resize(ref _heldBack, Math.Max(_heldBack.Length * 2, _used));
                        }
                        _slots[keys[i]] = slot;
                    }
                    row.CopyTo(_heldBack.AsSpan(slot, width));
                    keep[i] = false;
                }
                else if (known)
                {
                    _heldBack.AsSpan(slot, width).Clear(); // sent with this push
                }
            }
        }
    }

    /// <summary>What is held back for a key (tests).</summary>
    internal float[] HeldBack(ulong key, int width)
    {
        lock (_slots)
        {
            return _slots.TryGetValue(key, out int slot) ? _heldBack.AsSpan(slot, width).ToArray() : new float[width];
        }
    }
}
