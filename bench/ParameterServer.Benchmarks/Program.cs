using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Perfolizer.Horology;

namespace ParameterServer.Benchmarks;

/// <summary>
/// `dotnet run -c Release -- [--short] [BenchmarkDotNet options]`. Every benchmark runs with the memory diagnoser and
/// the target is 0 bytes allocated per operation: the run fails (exit 1) when any benchmark allocates.
/// Default: in-process, 3 warm-up and 10 measured iterations of 250 ms (about two minutes for all).
/// --short: in-process, a few 20 ms iterations (seconds in all) to prove the benchmarks work, not to judge speed.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        bool quick = args.Contains("--short");
        args = args.Where(a => a != "--short").ToArray();
        var config = DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default).WithOptions(ConfigOptions.JoinSummary);
        config = quick
            ? config.AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(1).WithIterationCount(3)
                .WithIterationTime(TimeInterval.FromMilliseconds(20)).WithUnrollFactor(16).WithInvocationCount(160).WithId("short"))
            : config.AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(10)
                .WithIterationTime(TimeInterval.FromMilliseconds(250)).WithId("in-process"));
        if (!args.Any(a => a.StartsWith("--filter", StringComparison.Ordinal)))
        {
            args = [.. args, "--filter", "*"];
        }
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config).ToList();
        var allocating = Allocating(summaries);
        if (quick && allocating.Count > 0)
        {
            // A cold start can count a one-off allocation (the JIT replacing a method while it runs) against a few
            // short iterations: measure those again, warmed up, before calling it a regression.
            Console.Error.WriteLine($"benchmarks: {string.Join(", ", allocating)} allocated in the cold short run; measuring them again warmed up");
            var warm = DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default).WithOptions(ConfigOptions.JoinSummary)
                .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(3)
                    .WithIterationTime(TimeInterval.FromMilliseconds(50)).WithId("short-warm"));
            string[] filter = ["--filter", .. allocating.Select(a => "*" + a + "*").Distinct()];
            summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(filter, warm).ToList();
        }
        return Check(summaries);
    }

    /// <summary>Type.Method of each benchmark that allocated.</summary>
    private static List<string> Allocating(List<Summary> summaries) => summaries.SelectMany(s => s.Reports)
        .Where(r => r.Success && (r.GcStats.GetBytesAllocatedPerOperation(r.BenchmarkCase) ?? 0) > 0)
        .Select(r => $"{r.BenchmarkCase.Descriptor.Type.Name}.{r.BenchmarkCase.Descriptor.WorkloadMethod.Name}")
        .Distinct()
        .ToList();

    /// <summary>Exit code: 1 when a benchmark failed or allocated, 0 otherwise.</summary>
    private static int Check(List<Summary> summaries)
    {
        var reports = summaries.SelectMany(s => s.Reports).ToList();
        if (reports.Count == 0 || reports.Any(r => !r.Success))
        {
            Console.Error.WriteLine($"benchmarks: {reports.Count(r => !r.Success)} of {reports.Count} failed");
            return 1;
        }
        var allocating = reports
            .Select(r => (Name: r.BenchmarkCase.DisplayInfo, Bytes: r.GcStats.GetBytesAllocatedPerOperation(r.BenchmarkCase) ?? 0))
            .Where(x => x.Bytes > 0)
            .ToList();
        foreach (var (name, bytes) in allocating)
        {
            Console.Error.WriteLine($"benchmarks: {name} allocates {bytes} B per operation (target 0)");
        }
        Console.Error.WriteLine(allocating.Count == 0 ? $"benchmarks: {reports.Count} benchmarks, 0 B allocated per operation" : "benchmarks: allocation target missed");
        return allocating.Count == 0 ? 0 : 1;
    }
}
