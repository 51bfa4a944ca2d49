using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace ParameterServer.Apps.LogReg.Data;

/// <summary>
/// Parses minibatches on a background thread, a few ahead of the consumer: parsing is most of a worker's
/// CPU time, so it overlaps the gradient math and the waits for the servers. Batches are recycled.
/// A parse error is rethrown to the consumer by <see cref="Next"/>.
/// </summary>
public sealed class BatchSource : IDisposable
{
    private readonly BlockingCollection<MiniBatch?> _ready;
    private readonly BlockingCollection<MiniBatch> _free;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private ExceptionDispatchInfo? _error;

    public BatchSource(LibSvmReader reader, int batchSize, int depth = 4)
    {
        _ready = new BlockingCollection<MiniBatch?>(depth + 1);
        _free = new BlockingCollection<MiniBatch>(depth + 2);
        for (int i = 0; i < depth + 2; i++)
        {
            _free.Add(new MiniBatch());
        }
        _thread = new Thread(() => Produce(reader, batchSize)) { IsBackground = true, Name = "ps-parse" };
        _thread.Start();
    }

    private void Produce(LibSvmReader reader, int batchSize)
    {
        try
        {
            while (true)
            {
                var batch = _free.Take(_stop.Token);
                if (!reader.ReadBatch(batch, batchSize))
                {
                    break;
                }
                _ready.Add(batch, _stop.Token);
            }
        }
        catch (OperationCanceledException)
        {
            return;
        }
        catch (Exception ex)
        {
            _error = ExceptionDispatchInfo.Capture(ex);
        }
        try
        {
            _ready.Add(null, _stop.Token); // end of the shard (or an error, in _error)
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The next batch, or null at the end of the shard. Give it back with <see cref="Recycle"/> when done.</summary>
    public MiniBatch? Next()
    {
        var batch = _ready.Take();
        if (batch is null)
        {
            _ready.Add(null); // later calls see the end too
            _error?.Throw();
        }
        return batch;
    }

    public void Recycle(MiniBatch batch) => _free.Add(batch);

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }
}
