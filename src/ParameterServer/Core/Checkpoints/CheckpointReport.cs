using System.Runtime.InteropServices;

namespace ParameterServer.Core.Checkpoints;

/// <summary>What a verified checkpoint holds (what `pserver checkpoint verify` prints).</summary>
/// <param name="Folder">The epoch folder that was read.</param>
/// <param name="Epoch">The checkpoint's epoch.</param>
/// <param name="View">The cluster view it was written in.</param>
/// <param name="WrittenUtc">When the scheduler wrote its manifest (ISO 8601, UTC).</param>
/// <param name="Files">One entry per server file.</param>
/// <param name="Tables">One entry per table.</param>
public sealed record CheckpointReport(string Folder, long Epoch, uint View, string WrittenUtc, IReadOnlyList<CheckpointFileReport> Files, IReadOnlyList<CheckpointTableReport> Tables)
{
    /// <summary>
    /// Opens a checkpoint directory (its newest complete epoch) or one epoch folder and verifies every file's
    /// checksum; throws <see cref="PsException"/> naming the file when one is missing or corrupted.
    /// </summary>
    public static void Check(string path) => CheckpointFiles.Open(path);

    /// <summary>Verifies a checkpoint like <see cref="Check"/>, then reads every row to sum up each file and table.</summary>
    public static CheckpointReport Read(string path)
    {
        var (folder, manifest) = CheckpointFiles.Open(path);
        var rows = new Dictionary<int, long>();
        var sums = new Dictionary<int, double>();
        var files = new List<CheckpointFileReport>();
        foreach (var file in manifest.Files)
        {
            float min = float.MaxValue;
            float max = float.MinValue;
            CheckpointFiles.ReadServerFile(Path.Combine(folder, file.Name), (tableId, stride, keys, values) =>
            {
                var table = manifest.Tables.First(t => t.Id == tableId);
                int words = table.Words;
                double sum = 0;
                for (int i = 0; i < keys.Length; i++)
                {
                    var row = values.Slice(i * stride, words);
                    for (int j = 0; j < table.Width; j++)
                    {
                        // Integers are stored as their bits in 4-byte words, an int64 in two.
                        double value = table.Element switch
                        {
                            ElementType.Int32 => BitConverter.SingleToInt32Bits(row[j]),
                            ElementType.Int64 => MemoryMarshal.Cast<float, long>(row)[j],
                            _ => row[j],
                        };
                        sum += value;
                        min = Math.Min(min, (float)value);
                        max = Math.Max(max, (float)value);
                    }
                }
                rows[tableId] = rows.GetValueOrDefault(tableId) + keys.Length;
                sums[tableId] = sums.GetValueOrDefault(tableId) + sum;
            });
            files.Add(new CheckpointFileReport(file.Name, file.Rows, file.Rows > 0 ? min : 0, file.Rows > 0 ? max : 0));
        }
        var tables = manifest.Tables.Select(t => new CheckpointTableReport(t.Name, t.Id, t.Width, rows.GetValueOrDefault(t.Id), sums.GetValueOrDefault(t.Id))).ToList();
        return new CheckpointReport(folder, manifest.Epoch, manifest.View, manifest.WrittenUtc, files, tables);
    }
}

/// <summary>One server file of a checkpoint: its rows and the smallest and largest value in them (0 when empty).</summary>
public sealed record CheckpointFileReport(string Name, long Rows, float ValueMin, float ValueMax);

/// <summary>One table of a checkpoint: its rows over all files and the sum of their values.</summary>
public sealed record CheckpointTableReport(string Name, int Id, int Width, long Rows, double ValueSum);
