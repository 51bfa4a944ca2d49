using ParameterServer.Client;
using ParameterServer.Server;

namespace ParameterServer.Apps.LogReg;

/// <summary>Where the trainer's weights live: on the parameter servers, or in this process (the baseline).</summary>
internal interface IWeightStore
{
    long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination);

    long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> gradient);

    void Wait(long ticket);

    void WaitAll();

    /// <summary>A batch of <paramref name="rows"/> is done, with its mean loss (for the job's status and dashboard).</summary>
    void StepDone(int rows, double loss)
    {
    }
}

internal sealed class ServerWeights(PsClient client, PsTable table) : IWeightStore
{
    public long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination) => table.Pull(keys, destination);

    public long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> gradient) => table.Push(keys, gradient);

    public void Wait(long ticket) => table.Wait(ticket);

    public void WaitAll() => client.WaitAll();

    public void StepDone(int rows, double loss) => client.Diagnostics.ReportStep(rows, loss);
}

/// <summary>The same store and update handler the servers use, called directly: the single-process baseline.</summary>
internal sealed class LocalWeights(string handler) : IWeightStore
{
    private readonly LocalTable _store = new(new TableSpec("local") { Handler = handler });

    public long Pull(ReadOnlySpan<ulong> keys, Memory<float> destination)
    {
        _store.Read(keys, destination.Span);
        return 0;
    }

    public long Push(ReadOnlySpan<ulong> keys, ReadOnlySpan<float> gradient)
    {
        _store.Apply(keys, gradient);
        return 0;
    }

    public void Wait(long ticket)
    {
    }

    public void WaitAll()
    {
    }
}
