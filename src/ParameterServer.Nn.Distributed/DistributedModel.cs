using System.Diagnostics;
using System.Numerics.Tensors;
using ParameterServer.Client;

namespace ParameterServer.Nn.Distributed;

/// <summary>How workers combine their gradients.</summary>
public enum TrainingMode
{
    /// <summary>
    /// DistBelief's Downpour SGD: each worker fetches the parameters every <see cref="DistributedModelOptions.FetchEvery"/>
    /// steps and pushes its accumulated gradients every <see cref="DistributedModelOptions.PushEvery"/> steps, without
    /// waiting for the others (within the table's bounded delay); the servers apply each push as it arrives.
    /// </summary>
    Downpour,

    /// <summary>
    /// Synchronous data parallelism: every step, the servers sum the gradients of all workers (each scaled by
    /// 1/workers, so the sum is their mean), apply the update once, and then every worker fetches the result.
    /// </summary>
    Sync,
}

/// <summary>What <see cref="DistributedModel.BindAsync"/> declares and how it trains.</summary>
public sealed record DistributedModelOptions
{
    /// <summary>Names the tables: NAME (the parameters), NAME.init, NAME.manifest.</summary>
    public string Name { get; init; } = "model";

    public TrainingMode Mode { get; init; } = TrainingMode.Downpour;

    /// <summary>The servers' update rule (a <see cref="TableSpec.Handler"/>): momentum, adagrad, adam, sgd with parameters.</summary>
    public string Update { get; init; } = "momentum:lr=0.05,mu=0.9";

    /// <summary>Downpour's n_fetch: steps between fetches of the parameters.</summary>
    public int FetchEvery { get; init; } = 1;

    /// <summary>Downpour's n_push: steps whose gradients are summed into one push.</summary>
    public int PushEvery { get; init; } = 1;

    /// <summary>Value encoding of pushes and fetches (<see cref="TableSpec.Compression"/>), e.g. fp16 or topk:0.01.</summary>
    public string Compression { get; init; } = "none";

    /// <summary>How far this worker's pushes may run ahead of their acknowledgements (Downpour).</summary>
    public Consistency Consistency { get; init; } = Consistency.BoundedDelay(4);

    /// <summary>Floats per key of the parameter table.</summary>
    public int RowWidth { get; init; } = 64;

    /// <summary>Puts NAME and NAME.init in this placement group (<see cref="TableSpec.PlacementGroup"/>), for server-side vector operations.</summary>
    public string? PlacementGroup { get; init; }

    public void Validate()
    {
        if (FetchEvery < 1 || PushEvery < 1)
        {
            throw new ArgumentException($"fetch and push intervals must be at least 1 step, got n_fetch {FetchEvery} and n_push {PushEvery}");
        }
        if (Mode == TrainingMode.Sync && (FetchEvery != 1 || PushEvery != 1))
        {
            throw new ArgumentException("synchronous training pushes and fetches every step: n_fetch and n_push apply to Downpour only");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(RowWidth, 1);
    }
}

/// <summary>
/// A model bound to parameter-server tables, for a training loop that changes a few lines:
/// <code>
/// var distributed = await DistributedModel.BindAsync(client, model, options);
/// foreach (var batch in myShard)
/// {
///     distributed.BeforeStep();                    // fetches the parameters when due
///     model.ComputeGradients(batch.X, batch.Y, n); // the loop's own forward and backward
///     distributed.AfterStep();                     // pushes the gradients when due
/// }
/// await distributed.FinishAsync();
/// </code>
/// The servers hold each parameter's displacement from its initial value (rank 0's initialisation, shared through the
/// NAME.init table), so every update rule starts from the same model on every worker whatever its seed. Weight decay,
/// when wanted, belongs in the gradient the loop computes.
/// </summary>
public sealed class DistributedModel
{
    private const int ManifestWidth = 64;
    private const int ManifestRows = 4096;
    private const int ManifestHead = 10; // name length, rank, 8 dimensions; then the name's characters

    private readonly PsClient _client;
    private readonly PsTable _table;
    private readonly DistributedModelOptions _options;
    private readonly float[] _initial;
    private readonly float[] _fetched;
    private readonly float[] _gradients;
    private readonly float[] _accumulated;
    private long _pendingFetch = -1;
    private long _lastPush = -1;
    private int _accumulatedSteps;
    private long _fetchTicks;
    private long _pushTicks;

    private DistributedModel(PsClient client, PsTable table, ParameterLayout layout, DistributedModelOptions options, float[] initial)
    {
        _client = client;
        _table = table;
        Layout = layout;
        _options = options;
        _initial = initial;
        _fetched = new float[layout.Length];
        _gradients = new float[layout.Length];
        _accumulated = new float[layout.Length];
    }

    public ParameterLayout Layout { get; }

    /// <summary>Steps completed (calls of <see cref="AfterStep"/>).</summary>
    public long Steps { get; private set; }

    /// <summary>Time this worker waited for fetched parameters.</summary>
    public TimeSpan FetchWait => Stopwatch.GetElapsedTime(0, _fetchTicks);

    /// <summary>Time this worker spent handing pushes over (gathering, encoding, waiting for room under the bounded delay).</summary>
    public TimeSpan PushTime => Stopwatch.GetElapsedTime(0, _pushTicks);

    /// <summary>
    /// Declares the model's tables (the same from every worker), checks that this worker's tensors match the job's,
    /// and sets the model's parameters to the job's current ones. Rank 0 of the starting workers publishes its
    /// initial parameters and its tensors' names and shapes; the others wait for it at a barrier.
    /// </summary>
    public static async Task<DistributedModel> BindAsync(PsClient client, ITrainableModel model, DistributedModelOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var layout = new ParameterLayout(model.Parameters, options.RowWidth);
        if (layout.Tensors.Count >= ManifestRows)
        {
            throw new ArgumentException($"the model has {layout.Tensors.Count} tensors; at most {ManifestRows - 1} can be bound");
        }
        var manifest = await client.DeclareTableAsync(new TableSpec(options.Name + ".manifest", ManifestWidth) { DenseSize = ManifestRows, BlockKeys = ManifestRows }, cancellationToken).ConfigureAwait(false);
        bool publishes = client.Rank == 0 && !client.JoinedLate;
        var mine = Manifest(layout);
        var initial = new float[layout.Length];
        PsTable init = null!; // set on both paths below
        if (publishes)
        {
            // Rank 0's model is the job's: its tensors and initial values go out before the one barrier.
            await client.WaitAsync(manifest.PushRange(0, mine), cancellationToken).ConfigureAwait(false);
            init = await DeclareInitAsync(client, layout, options, cancellationToken).ConfigureAwait(false);
            layout.Gather(initial, gradients: false);
            await client.WaitAsync(init.PushRange(0, initial), cancellationToken).ConfigureAwait(false);
        }
        if (!client.JoinedLate)
        {
            await client.BarrierAsync(cancellationToken).ConfigureAwait(false);
        }
        if (!publishes)
        {
            // Checked before any table whose size depends on the model is declared, so a mismatch names the tensor.
            var theirs = new float[mine.Length];
            await client.WaitAsync(manifest.PullRange(0, theirs), cancellationToken).ConfigureAwait(false);
            CheckManifest(options.Name, layout, mine, theirs);
            init = await DeclareInitAsync(client, layout, options, cancellationToken).ConfigureAwait(false);
            await client.WaitAsync(init.PullRange(0, initial), cancellationToken).ConfigureAwait(false);
        }
        var table = await client.DeclareTableAsync(new TableSpec(options.Name, options.RowWidth)
        {
            DenseSize = (ulong)layout.Rows,
            BlockKeys = BlockKeys(layout),
            Handler = options.Update,
            Mode = options.Mode == TrainingMode.Sync ? UpdateMode.Sync : UpdateMode.Async,
            Compression = options.Compression,
            PlacementGroup = options.PlacementGroup,
        }, cancellationToken).ConfigureAwait(false);
        table.Consistency = options.Mode == TrainingMode.Sync ? Consistency.Sequential : options.Consistency;
        var bound = new DistributedModel(client, table, layout, options, initial) { InitTable = init };
        await bound.FetchAsync(cancellationToken).ConfigureAwait(false);
        return bound;
    }

    /// <summary>The parameter table (offsets from the initial values).</summary>
    internal PsTable Table => _table;

    /// <summary>Rank 0's initial values.</summary>
    internal PsTable? InitTable { get; private set; }

    // About 1,024 blocks per model, so that shares follow the ring's own spread: with 2 copies on 4 servers the fullest
    // holds 6% over the even split on average (15% at worst over 300 rings); with 64 blocks it was 15% (and 38%).
    internal static int BlockKeys(ParameterLayout layout) => Math.Max(1, (layout.Rows + 1023) / 1024);

    private static Task<PsTable> DeclareInitAsync(PsClient client, ParameterLayout layout, DistributedModelOptions options, CancellationToken cancellationToken) =>
        client.DeclareTableAsync(new TableSpec(options.Name + ".init", options.RowWidth) { DenseSize = (ulong)layout.Rows, BlockKeys = BlockKeys(layout), PlacementGroup = options.PlacementGroup }, cancellationToken);

    /// <summary>Before a step's forward pass: fetches the parameters when due (every step in sync mode) and waits for them.</summary>
    public void BeforeStep()
    {
        if (_options.Mode == TrainingMode.Sync)
        {
            if (_pendingFetch >= 0)
            {
                CompleteFetch();
            }
            return;
        }
        if (Steps % _options.FetchEvery == 0)
        {
            long start = Stopwatch.GetTimestamp();
            _pendingFetch = _table.PullRange(0, _fetched);
            CompleteFetch();
            _fetchTicks += Stopwatch.GetTimestamp() - start;
        }
    }

    /// <summary>
    /// After a step's backward pass: adds the model's gradients, times <paramref name="scale"/> (a learning-rate
    /// schedule, for example), to what this worker will push, and pushes when due. Refuses non-finite gradients
    /// before anything is sent, naming the tensor.
    /// </summary>
    public void AfterStep(float scale = 1f)
    {
        long start = Stopwatch.GetTimestamp();
        Layout.Gather(_gradients, gradients: true);
        CheckFinite();
        if (_options.Mode == TrainingMode.Sync)
        {
            // The servers sum every worker's push of a round: scaled by 1/workers, the sum is the mean.
            TensorPrimitives.Multiply(_gradients, scale / _client.WorkerCount, _accumulated);
            _lastPush = _table.PushRange(0, _accumulated);
            _pendingFetch = _table.PullRange(0, _fetched, [_lastPush]);
            Steps++;
            _pushTicks += Stopwatch.GetTimestamp() - start;
            return;
        }
        TensorPrimitives.MultiplyAdd(_gradients, scale, _accumulated, _accumulated);
        _accumulatedSteps++;
        Steps++;
        if (_accumulatedSteps >= _options.PushEvery)
        {
            PushAccumulated();
        }
        _pushTicks += Stopwatch.GetTimestamp() - start;
    }

    /// <summary>Pushes what is left, waits for every push, and sets the model to the job's current parameters.</summary>
    public async Task FinishAsync(CancellationToken cancellationToken = default)
    {
        if (_accumulatedSteps > 0)
        {
            PushAccumulated();
        }
        if (_lastPush >= 0)
        {
            await _client.WaitAsync(_lastPush, cancellationToken).ConfigureAwait(false);
        }
        await FetchAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sets the model's parameters to the servers' current ones (for an evaluation, say).</summary>
    public async Task FetchAsync(CancellationToken cancellationToken = default)
    {
        if (_pendingFetch >= 0)
        {
            await _client.WaitAsync(_pendingFetch, cancellationToken).ConfigureAwait(false); // it writes the same buffer
        }
        _pendingFetch = _table.PullRange(0, _fetched);
        await _client.WaitAsync(_pendingFetch, cancellationToken).ConfigureAwait(false);
        _pendingFetch = -1;
        Layout.ScatterSum(_initial, _fetched);
    }

    private void PushAccumulated()
    {
        _lastPush = _table.PushRange(0, _accumulated);
        Array.Clear(_accumulated);
        _accumulatedSteps = 0;
    }

    private void CompleteFetch()
    {
        _client.Wait(_pendingFetch);
        _pendingFetch = -1;
        Layout.ScatterSum(_initial, _fetched);
    }

    private void CheckFinite()
    {
        if (float.IsFinite(TensorPrimitives.Sum(_gradients)))
        {
            return; // a NaN or an infinity would make the sum one
        }
        for (int i = 0; i < Layout.Tensors.Count; i++)
        {
            var tensor = Layout.Tensors[i];
            var gradient = tensor.Gradient.Span;
            for (int j = 0; j < gradient.Length; j++)
            {
                if (!float.IsFinite(gradient[j]))
                {
                    throw new PsException(PsErrorCode.InvalidArgument,
                        $"step {Steps}: the gradient of tensor '{tensor.Name}' holds {gradient[j]} at index {j}: nothing was pushed, the parameters are unchanged; a learning rate that is too high is the usual cause");
                }
            }
        }
    }

    /// <summary>Row 0: tensors, floats, row width; row i + 1: tensor i's name length, rank, dimensions and name.</summary>
    private static float[] Manifest(ParameterLayout layout)
    {
        var rows = new float[(layout.Tensors.Count + 1) * ManifestWidth];
        rows[0] = layout.Tensors.Count;
        rows[1] = layout.Length;
        rows[2] = layout.RowWidth;
        for (int i = 0; i < layout.Tensors.Count; i++)
        {
            var tensor = layout.Tensors[i];
            var row = rows.AsSpan((i + 1) * ManifestWidth, ManifestWidth);
            row[0] = tensor.Name.Length;
            row[1] = tensor.Shape.Count;
            for (int d = 0; d < Math.Min(8, tensor.Shape.Count); d++)
            {
                row[2 + d] = tensor.Shape[d];
            }
            for (int c = 0; c < Math.Min(tensor.Name.Length, ManifestWidth - ManifestHead); c++)
            {
                row[ManifestHead + c] = tensor.Name[c];
            }
        }
        return rows;
    }

    private static void CheckManifest(string name, ParameterLayout layout, float[] mine, float[] theirs)
    {
        string where = $"the tables '{name}' that rank 0 declared";
        int count = (int)theirs[0];
        for (int i = 0; i < Math.Min(count, layout.Tensors.Count); i++)
        {
            var a = mine.AsSpan((i + 1) * ManifestWidth, ManifestWidth);
            var b = theirs.AsSpan((i + 1) * ManifestWidth, ManifestWidth);
            if (!a.SequenceEqual(b))
            {
                throw new PsException(PsErrorCode.InvalidArgument,
                    $"this worker's model does not match the job's: tensor {i} is '{layout.Tensors[i].Name}' {ParameterTensor.Describe(layout.Tensors[i].Shape)} here, '{NameOf(b)}' {ShapeOf(b)} in {where}");
            }
        }
        if (count != layout.Tensors.Count || theirs[2] != layout.RowWidth)
        {
            throw new PsException(PsErrorCode.InvalidArgument,
                $"this worker's model does not match the job's: it has {layout.Tensors.Count} tensors in rows of {layout.RowWidth}, {where} hold {count} in rows of {theirs[2]}");
        }
    }

    private static string NameOf(ReadOnlySpan<float> row)
    {
        int length = Math.Min((int)row[0], ManifestWidth - ManifestHead);
        var chars = new char[length];
        for (int c = 0; c < length; c++)
        {
            chars[c] = (char)row[ManifestHead + c];
        }
        return new string(chars);
    }

    private static string ShapeOf(ReadOnlySpan<float> row)
    {
        int rank = (int)row[1];
        var dims = new int[Math.Min(rank, 8)];
        for (int d = 0; d < dims.Length; d++)
        {
            dims[d] = (int)row[2 + d];
        }
        return ParameterTensor.Describe(dims);
    }
}
