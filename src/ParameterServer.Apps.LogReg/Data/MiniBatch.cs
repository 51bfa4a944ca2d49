using ParameterServer.Core.Cluster;

namespace ParameterServer.Apps.LogReg.Data;

/// <summary>
/// A minibatch of sparse rows in CSR form, plus the sorted unique keys it touches and, for every nonzero,
/// the index of its key in that list (so weights pulled for the unique keys can be used directly).
/// Arrays are reused from batch to batch: no allocation once they have grown.
/// </summary>
public sealed class MiniBatch
{
    private ulong[] _keys = new ulong[1024];
    private float[] _values = new float[1024];
    private int[] _slots = new int[1024];
    private float[] _labels = new float[64];
    private int[] _rowStart = new int[65];
    private ulong[] _unique = new ulong[256];
    private readonly KeyIndex _index = new();

    public int Rows { get; private set; }

    public int Nonzeros { get; private set; }

    public int UniqueCount { get; private set; }

    /// <summary>0 or 1 per row.</summary>
    public ReadOnlySpan<float> Labels => _labels.AsSpan(0, Rows);

    public ReadOnlySpan<int> RowStarts => _rowStart.AsSpan(0, Rows + 1);

    public ReadOnlySpan<ulong> Keys => _keys.AsSpan(0, Nonzeros);

    public ReadOnlySpan<float> Values => _values.AsSpan(0, Nonzeros);

    /// <summary>For each nonzero, the position of its key in <see cref="UniqueKeys"/>.</summary>
    public ReadOnlySpan<int> Slots => _slots.AsSpan(0, Nonzeros);

    /// <summary>The keys this batch touches, sorted ascending, each once.</summary>
    public ReadOnlySpan<ulong> UniqueKeys => _unique.AsSpan(0, UniqueCount);

    public void Clear()
    {
        Rows = 0;
        Nonzeros = 0;
        UniqueCount = 0;
        _rowStart[0] = 0;
    }

    public void BeginRow(float label)
    {
        if (Rows + 1 >= _labels.Length)
        {
            Array.Resize(ref _labels, _labels.Length * 2);
            Array.Resize(ref _rowStart, _labels.Length + 1);
        }
        _labels[Rows] = label;
    }

    public void Add(ulong key, float value)
    {
        if (Nonzeros == _keys.Length)
        {
            Array.Resize(ref _keys, _keys.Length * 2);
            Array.Resize(ref _values, _keys.Length);
            Array.Resize(ref _slots, _keys.Length);
        }
        _keys[Nonzeros] = key;
        _values[Nonzeros] = value;
        Nonzeros++;
    }

    public void EndRow()
    {
        Rows++;
        _rowStart[Rows] = Nonzeros;
    }

    /// <summary>Drops the row begun last (a bad line being skipped).</summary>
    public void AbandonRow() => Nonzeros = _rowStart[Rows];

    /// <summary>Computes <see cref="UniqueKeys"/> and <see cref="Slots"/>: hash the keys, sort the distinct ones, remap.</summary>
    public void Index()
    {
        _index.Reset(Nonzeros);
        int distinct = 0;
        for (int i = 0; i < Nonzeros; i++)
        {
            int slot = _index.GetOrAdd(_keys[i], distinct);
            if (slot == distinct)
            {
                if (distinct == _unique.Length)
                {
                    Array.Resize(ref _unique, _unique.Length * 2);
                }
                _unique[distinct++] = _keys[i];
            }
            _slots[i] = slot;
        }
        UniqueCount = distinct;
        // Sort the distinct keys and translate first-seen order into sorted order.
        var unique = _unique.AsSpan(0, distinct);
        int[] order = _index.Order(distinct);
        for (int i = 0; i < distinct; i++)
        {
            order[i] = i;
        }
        unique.Sort(order.AsSpan(0, distinct));
        int[] rank = _index.Rank(distinct);
        for (int sorted = 0; sorted < distinct; sorted++)
        {
            rank[order[sorted]] = sorted;
        }
        for (int i = 0; i < Nonzeros; i++)
        {
            _slots[i] = rank[_slots[i]];
        }
    }

    /// <summary>Open-addressing key -> first-seen index map, cleared per batch in O(capacity) only when it grows.</summary>
    private sealed class KeyIndex
    {
        private ulong[] _keys = new ulong[1024];
        private int[] _values = new int[1024];
        private int[] _stamp = new int[1024];
        private int _generation;
        private int[] _order = new int[256];
        private int[] _rank = new int[256];

        public void Reset(int expected)
        {
            int capacity = _keys.Length;
            while (capacity < expected * 2)
            {
                capacity *= 2;
            }
            if (capacity != _keys.Length)
            {
                _keys = new ulong[capacity];
                _values = new int[capacity];
                _stamp = new int[capacity];
                _generation = 0;
            }
            _generation++;
            if (_generation == int.MaxValue)
            {
                Array.Clear(_stamp);
                _generation = 1;
            }
        }

        public int GetOrAdd(ulong key, int next)
        {
            int mask = _keys.Length - 1;
            int i = (int)(Hashing.Mix64(key) & (ulong)mask);
            while (_stamp[i] == _generation)
            {
                if (_keys[i] == key)
                {
                    return _values[i];
                }
                i = (i + 1) & mask;
            }
            _stamp[i] = _generation;
            _keys[i] = key;
            _values[i] = next;
            return next;
        }

        public int[] Order(int count) => count <= _order.Length ? _order : _order = new int[count * 2];

        public int[] Rank(int count) => count <= _rank.Length ? _rank : _rank = new int[count * 2];
    }
}
