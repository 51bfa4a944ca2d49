namespace ParameterServer.Apps.LogReg.Data;

/// <summary>
/// One worker's shard by row (CSR) over the shard's columns (its distinct keys, ascending): what a full-gradient
/// solver reads every round. A row's margin reads the weights of its own columns and its gradient adds into them, so
/// a pass is sequential in the nonzeros and splits by row ranges across cores without sharing anything.
/// </summary>
internal sealed class RowShard
{
    private RowShard(ulong[] keys, float[] labels, int[] rowStarts, int[] columns, float[] values)
    {
        Keys = keys;
        Labels = labels;
        RowStarts = rowStarts;
        Columns = columns;
        Values = values;
    }

    /// <summary>The key of each column, ascending.</summary>
    public ulong[] Keys { get; }

    /// <summary>0 or 1 per row.</summary>
    public float[] Labels { get; }

    /// <summary>Row i's nonzeros are [RowStarts[i], RowStarts[i + 1]).</summary>
    public int[] RowStarts { get; }

    /// <summary>Each nonzero's column (an index into <see cref="Keys"/>).</summary>
    public int[] Columns { get; }

    public float[] Values { get; }

    public int Rows => Labels.Length;

    /// <summary>The same nonzeros by row (a transpose: one pass to count, one to place).</summary>
    public static RowShard From(ShardMatrix byColumn)
    {
        var rowStarts = new int[byColumn.Rows + 1];
        foreach (int row in byColumn.RowIndices)
        {
            rowStarts[row + 1]++;
        }
        for (int i = 0; i < byColumn.Rows; i++)
        {
            rowStarts[i + 1] += rowStarts[i];
        }
        var next = rowStarts[..^1];
        var columns = new int[byColumn.RowIndices.Length];
        var values = new float[columns.Length];
        var starts = byColumn.ColumnStarts;
        for (int c = 0; c < byColumn.Keys.Length; c++)
        {
            for (int k = starts[c]; k < starts[c + 1]; k++)
            {
                int at = next[byColumn.RowIndices[k]]++;
                columns[at] = c;
                values[at] = byColumn.Values[k];
            }
        }
        return new RowShard(byColumn.Keys, byColumn.Labels, rowStarts, columns, values);
    }
}
