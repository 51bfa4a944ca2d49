using ParameterServer.Client;
using ParameterServer.Nn;
using ParameterServer.Nn.Data;
using ParameterServer.Nn.Distributed;
using ParameterServer.Nn.Layers;

namespace ParameterServer.IntegrationTests;

/// <summary>The adapter against real servers (in-process, real TCP): sync training is exact; mismatched models and NaN gradients are refused.</summary>
public sealed class DistributedModelTests
{
    private const int Batch = 16;
    private static readonly Lazy<LabeledImages> Images = new(() => Mnist.LoadDirectory(SharedData.MnistDirectory, train: false));

    private static Sequential SmallMlp(int hidden = 32)
    {
        var model = Models.Mlp(new FeatureShape(1, 28, 28), 10, Batch, [hidden]);
        model.Initialize(seed: 5);
        return model;
    }

    private static (float[] X, byte[] Y) BatchAt(int index)
    {
        var images = Images.Value;
        return (images.Pixels.AsSpan(index * Batch * 784, Batch * 784).ToArray(), images.Labels.AsSpan(index * Batch, Batch).ToArray());
    }

    /// <summary>A cluster whose clients and nodes are closed whatever the test does.</summary>
    private sealed class Job(InProcessCluster cluster, PsClient[] clients) : IAsyncDisposable
    {
        public PsClient[] Clients { get; } = clients;

        public static async Task<Job> StartAsync(int servers, int workers)
        {
            var (cluster, clients) = await InProcessCluster.StartAsync(servers, workers);
            return new Job(cluster, clients);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var client in Clients)
            {
                await client.DisposeAsync();
            }
            await cluster.DisposeAsync();
        }
    }

    [Fact]
    public async Task Sync_training_through_the_servers_gives_the_parameters_of_single_process_sgd_on_the_same_batches()
    {
        const int steps = 12;
        const float lr = 0.1f;
        await using var job = await Job.StartAsync(servers: 2, workers: 2);
        var clients = job.Clients;
        var models = clients.Select(_ => SmallMlp()).ToArray();
        var options = new DistributedModelOptions { Name = "exact", Mode = TrainingMode.Sync, Update = $"sgd:lr={lr}", RowWidth = 48 };
        await Task.WhenAll(clients.Select((client, i) => Task.Run(async () =>
        {
            var distributed = await DistributedModel.BindAsync(client, models[i], options);
            for (int s = 0; s < steps; s++)
            {
                var (x, y) = BatchAt((s * 2) + client.Rank);
                distributed.BeforeStep();
                models[i].ComputeGradients(x, y, Batch);
                distributed.AfterStep();
            }
            await distributed.FinishAsync();
        })));

        // One process: the mean of the two workers' batch gradients, one SGD step each round.
        var reference = SmallMlp();
        for (int s = 0; s < steps; s++)
        {
            var sums = reference.Parameters.Select(p => new float[p.Count]).ToArray();
            for (int r = 0; r < 2; r++)
            {
                var (x, y) = BatchAt((s * 2) + r);
                reference.ComputeGradients(x, y, Batch);
                for (int t = 0; t < sums.Length; t++)
                {
                    var g = reference.Parameters[t].Gradient.Span;
                    for (int i = 0; i < g.Length; i++)
                    {
                        sums[t][i] += g[i] * 0.5f;
                    }
                }
            }
            for (int t = 0; t < sums.Length; t++)
            {
                var w = reference.Parameters[t].Value.Span;
                for (int i = 0; i < w.Length; i++)
                {
                    w[i] -= lr * sums[t][i];
                }
            }
        }
        double moved = 0;
        foreach (var model in models)
        {
            for (int t = 0; t < reference.Parameters.Count; t++)
            {
                var expected = reference.Parameters[t].Value.Span;
                var actual = model.Parameters[t].Value.Span;
                for (int i = 0; i < expected.Length; i++)
                {
                    Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6, $"{reference.Parameters[t].Name}[{i}]: single process {expected[i]}, cluster {actual[i]}");
                }
            }
        }
        var initial = SmallMlp();
        for (int t = 0; t < initial.Parameters.Count; t++)
        {
            var a = initial.Parameters[t].Value.Span;
            var b = reference.Parameters[t].Value.Span;
            for (int i = 0; i < a.Length; i++)
            {
                moved = Math.Max(moved, Math.Abs(a[i] - b[i]));
            }
        }
        Assert.True(moved > 1e-3, "training moved no parameter: the comparison would prove nothing");
    }

    [Fact]
    public async Task A_worker_whose_model_does_not_match_the_job_is_refused_naming_the_tensor_and_both_shapes()
    {
        await using var job = await Job.StartAsync(servers: 1, workers: 2);
        var clients = job.Clients;
        var options = new DistributedModelOptions { Name = "shapes" };
        var results = await Task.WhenAll(clients.Select(client => Task.Run(async () =>
        {
            var model = SmallMlp(client.Rank == 0 ? 32 : 24);
            try
            {
                await DistributedModel.BindAsync(client, model, options);
                return null;
            }
            catch (PsException ex)
            {
                return ex.Message;
            }
        })));
        Assert.Null(results[0]); // rank 0's model is the job's
        Assert.NotNull(results[1]);
        Assert.Contains("tensor 0 is 'dense1.weight' [24, 784] here, 'dense1.weight' [32, 784]", results[1]);
    }

    [Fact]
    public async Task Non_finite_gradients_are_refused_naming_the_tensor_and_nothing_is_pushed()
    {
        await using var job = await Job.StartAsync(servers: 1, workers: 1);
        var clients = job.Clients;
        var model = SmallMlp();
        var distributed = await DistributedModel.BindAsync(clients[0], model, new DistributedModelOptions { Name = "nan", Update = "sgd:lr=0.1" });
        var before = model.Parameters.Select(p => p.Value.ToArray()).ToList();
        var (x, y) = BatchAt(0);
        distributed.BeforeStep();
        model.ComputeGradients(x, y, Batch);
        model.Parameters[2].Gradient.Span[3] = float.NaN;
        var ex = Assert.Throws<PsException>(() => distributed.AfterStep());
        Assert.Contains("tensor 'dense2.weight' holds NaN at index 3", ex.Message);
        await distributed.FetchAsync();
        for (int t = 0; t < before.Count; t++)
        {
            Assert.Equal(before[t], model.Parameters[t].Value.ToArray());
        }
    }
}
