using BenchmarkDotNet.Attributes;
using ParameterServer.Nn.Kernels;

namespace ParameterServer.Benchmarks;

/// <summary>
/// The matrix product under the model library's dense and convolution layers: a batch of 64 through a 784 -> 256
/// dense layer (the MLP's first layer), forward (A x B) and the weight gradient (A^T x dY), on OpenBLAS (one thread)
/// and on the managed kernel. The managed one is the fallback's baseline; both must allocate nothing.
/// </summary>
public class GemmBenchmarks
{
    private const int Batch = 64;
    private const int Inputs = 784;
    private const int Outputs = 256;
    private readonly float[] _x = new float[Batch * Inputs];
    private readonly float[] _w = new float[Inputs * Outputs];
    private readonly float[] _y = new float[Batch * Outputs];
    private readonly float[] _dw = new float[Inputs * Outputs];

    [Params(GemmBackend.OpenBlas, GemmBackend.Managed)]
    public GemmBackend Backend { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        foreach (var array in new[] { _x, _w, _y })
        {
            for (int i = 0; i < array.Length; i++)
            {
                array[i] = (float)random.NextDouble() - 0.5f;
            }
        }
    }

    private GemmBackend Effective => Backend == GemmBackend.OpenBlas && !Gemm.OpenBlasAvailable ? GemmBackend.Managed : Backend;

    /// <summary>Y (64 x 256) = X (64 x 784) x W (784 x 256).</summary>
    [Benchmark]
    public void DenseForward() => Gemm.Multiply(false, false, Batch, Outputs, Inputs, 1f, _x, _w, 0f, _y, Effective);

    /// <summary>dW (784 x 256) = X^T x dY (64 x 256).</summary>
    [Benchmark]
    public void DenseWeightGradient() => Gemm.Multiply(true, false, Inputs, Outputs, Batch, 1f, _x, _y, 0f, _dw, Effective);
}
