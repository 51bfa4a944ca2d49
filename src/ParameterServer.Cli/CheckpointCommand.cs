using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ParameterServer.Core.Checkpoints;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver checkpoint verify PATH`: checks every file of a checkpoint and sums up what it holds.</summary>
internal static class CheckpointCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "A checkpoint directory (its newest complete epoch) or one epoch folder" };
        var verify = new Command("verify", "Check a checkpoint's checksums and print its epoch, tables and rows") { path, PsOptions.Json };
        verify.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            CheckpointReport report;
            try
            {
                report = CheckpointReport.Read(p.GetValue(path)!);
            }
            catch (PsException ex)
            {
                throw new ArgumentException(ex.Message, ex); // bad input: exit code 2
            }
            string folder = report.Folder;
            var files = report.Files.Select(f => new { name = f.Name, rows = f.Rows, value_min = f.ValueMin, value_max = f.ValueMax }).ToList();
            var tables = report.Tables.Select(t => new { name = t.Name, id = t.Id, width = t.Width, rows = t.Rows, value_sum = t.ValueSum }).ToList();
            if (p.GetValue(PsOptions.Json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new { ok = true, folder, epoch = report.Epoch, view = report.View, written_utc = report.WrittenUtc, files, tables }));
            }
            else
            {
                Console.Out.WriteLine($"checkpoint OK: {folder} (epoch {report.Epoch}, written {report.WrittenUtc}, {report.Files.Count} server files)");
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
