using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Core.Checkpoints;

namespace ParameterServer.Cli;

/// <summary>`pserver checkpoint verify PATH`: checks every file of a checkpoint and sums up what it holds.</summary>
internal static class CheckpointCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "A checkpoint directory (its newest complete epoch) or one epoch folder" };
        var verify = new Command("verify", "Check a checkpoint's checksums and print its epoch, tables and rows") { path, Options.Json };
        verify.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            (string Folder, CheckpointManifest Manifest) opened;
            try
            {
                opened = CheckpointFiles.Open(p.GetValue(path)!);
            }
            catch (PsException ex)
            {
                throw new ArgumentException(ex.Message, ex); // bad input: exit code 2
            }
            var (folder, manifest) = opened;
            var rows = new Dictionary<int, long>();
            var sums = new Dictionary<int, double>();
            var files = new List<object>();
            foreach (var file in manifest.Files)
            {
                float min = float.MaxValue;
                float max = float.MinValue;
                CheckpointFiles.ReadServerFile(Path.Combine(folder, file.Name), (tableId, stride, keys, values) =>
                {
                    int width = manifest.Tables.First(t => t.Id == tableId).Width;
                    double sum = 0;
                    for (int i = 0; i < keys.Length; i++)
                    {
                        foreach (float v in values.Slice(i * stride, width))
                        {
                            sum += v;
                            min = Math.Min(min, v);
                            max = Math.Max(max, v);
                        }
                    }
                    rows[tableId] = rows.GetValueOrDefault(tableId) + keys.Length;
                    sums[tableId] = sums.GetValueOrDefault(tableId) + sum;
                });
                files.Add(new { name = file.Name, rows = file.Rows, value_min = file.Rows > 0 ? min : 0, value_max = file.Rows > 0 ? max : 0 });
            }
            var tables = manifest.Tables.Select(t => new { name = t.Name, id = t.Id, width = t.Width, rows = rows.GetValueOrDefault(t.Id), value_sum = sums.GetValueOrDefault(t.Id) }).ToList();
            if (p.GetValue(Options.Json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = true, folder, epoch = manifest.Epoch, view = manifest.View, written_utc = manifest.WrittenUtc, files, tables }));
            }
            else
            {
                Console.Out.WriteLine($"checkpoint OK: {folder} (epoch {manifest.Epoch}, written {manifest.WrittenUtc}, {manifest.Files.Length} server files)");
                foreach (var t in tables)
                {
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  table '{t.name}': {t.rows} rows of width {t.width}, values sum to {t.value_sum:G17}"));
                }
            }
            return Task.FromResult(ExitCodes.Ok);
        }));
        return new Command("checkpoint", "Inspect checkpoints written with --checkpoint-dir") { verify };
    }
}
