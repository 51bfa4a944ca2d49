using System.Diagnostics;
using ParameterServer.Apps.LogReg.Data;

namespace ParameterServer.Apps.LogReg;

/// <summary>
/// The single-process baseline of `pserver bench logreg`: the same trainer, store and update handler the
/// cluster uses, with the weights in local memory and no network.
/// </summary>
public static class LogRegBaseline
{
    /// <summary>Examples per second of each epoch over <paramref name="path"/>.</summary>
    public static List<double> Measure(LogRegOptions options, string path, CancellationToken cancellationToken)
    {
        options.Validate();
        var rates = new List<double>();
        var trainer = new LogRegTrainer(new LocalWeights(options.HandlerSpec), options.Batch, prefetch: false);
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            using var reader = new LibSvmReader(path, 0, 1, new LibSvmOptions { HashBits = options.HashBits });
            var watch = Stopwatch.StartNew();
            var result = trainer.Train(reader, 0, null, cancellationToken);
            rates.Add(result.Rows / watch.Elapsed.TotalSeconds);
        }
        return rates;
    }
}
