using System.CommandLine;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Hosting;

namespace ParameterServer.Cli;

/// <summary>`pserver data gen-sparse`: synthetic click-log-like LIBSVM data with known true weights.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var rows = PsOptions.Create("--rows", 1_000_000L, "Rows to generate");
        var features = PsOptions.Create("--features", 1_000_000, "Distinct feature ids (1..F)");
        var zipf = PsOptions.Create("--zipf", 1.1, "Power-law exponent of feature frequencies");
        var perRow = PsOptions.Create("--per-row", 20, "Nonzero features per row on average");
        var seed = PsOptions.Create("--seed", 1, "Seed of the true weights and the rows");
        var output = PsOptions.Create<string?>("--out", null, "Output file (the true weights go to OUT.weights)");
        var gen = new Command("gen-sparse", "Generate sparse LIBSVM data with power-law feature frequencies and known true weights")
        {
            rows, features, zipf, perRow, seed, output,
        };
        gen.SetAction((p, ct) => ExitCodes.Guard(() =>
        {
            string path = p.GetValue(output) ?? throw new ArgumentException("gen-sparse needs --out FILE");
            var spec = new SparseDataSpec { Rows = p.GetValue(rows), Features = p.GetValue(features), Zipf = p.GetValue(zipf), FeaturesPerRow = p.GetValue(perRow), Seed = p.GetValue(seed) };
            var progress = new ConsoleProgress();
            SparseGenerator.Write(spec, path, new Progress<double>(f => progress.Report(new JobProgress("generating", f))));
            progress.Clear();
            Console.Out.WriteLine($"wrote {spec.Rows:N0} rows to {path} and the true weights to {path}.weights");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return new Command("data", "Data tools") { gen };
    }
}
