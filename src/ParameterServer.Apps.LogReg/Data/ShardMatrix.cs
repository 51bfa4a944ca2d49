namespace ParameterServer.Apps.LogReg.Data;

/// <summary>
/// One worker's whole shard in memory, by column (CSC): what a batch solver needs to compute a block of features'
/// gradients over every row it holds. Columns are the distinct keys of the shard, in ascending key order.
/// </summary>
internal sealed class ShardMatrix
{
    private ShardMatrix(ulong[] keys, float[] labels, int[] columnStarts, int[] rowIndices, float[] values)
    {
        Keys = keys;
        Labels = labels;
        ColumnStarts = columnStarts;
        RowIndices = rowIndices;
        Values = values;
    }

    /// <summary>The key of each column, ascending.</summary>
    public ulong[] Keys { get; }

    /// <summary>0 or 1 per row.</summary>
    public float[] Labels { get; }

    /// <summary>Column c's nonzeros are [ColumnStarts[c], ColumnStarts[c + 1]).</summary>
    public int[] ColumnStarts { get; }

    public int[] RowIndices { get; }

    public float[] Values { get; }

    public int Rows => Labels.Length;

    public long Nonzeros => Values.Length;

    /// <summary>Reads the shard (the same rows <see cref="LibSvmReader"/> gives this worker) into memory.</summary>
    public static ShardMatrix Load(LibSvmReader reader, CancellationToken cancellationToken)
    {
        var batch = new MiniBatch();
        var labels = new List<float>();
        var rowOf = new List<int>();
        var keyOf = new List<ulong>();
        var valueOf = new List<float>();
        while (reader.ReadBatch(batch, 65_536))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var starts = batch.RowStarts;
            var keys = batch.Keys;
            var values = batch.Values;
            for (int r = 0; r < batch.Rows; r++)
            {
                int row = labels.Count;
                labels.Add(batch.Labels[r]);
                for (int j = starts[r]; j < starts[r + 1]; j++)
                {
                    rowOf.Add(row);
                    keyOf.Add(keys[j]);
                    valueOf.Add(values[j]);
                }
            }
        }
        // Sort the nonzeros by (key, row): the columns, each with its rows ascending.
        int n = rowOf.Count;
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
        }
        var sortKeys = keyOf.ToArray();
        Array.Sort(sortKeys, order); // unstable, so restore row order within a column below
        var distinct = new List<ulong>();
        var columnStarts = new List<int>();
        var rowIndices = new int[n];
        var columnValues = new float[n];
        for (int i = 0; i < n;)
        {
            int end = i;
            while (end < n && sortKeys[end] == sortKeys[i])
            {
                end++;
            }
            Array.Sort(order, i, end - i);
            distinct.Add(sortKeys[i]);
            columnStarts.Add(i);
            for (int k = i; k < end; k++)
            {
                rowIndices[k] = rowOf[order[k]];
                columnValues[k] = valueOf[order[k]];
            }
            i = end;
        }
        columnStarts.Add(n);
        return new ShardMatrix(distinct.ToArray(), labels.ToArray(), columnStarts.ToArray(), rowIndices, columnValues);
    }
}
