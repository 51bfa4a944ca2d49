using ParameterServer.Nn.Kernels;

namespace ParameterServer.Tests.Nn;

/// <summary>The matrix product, on OpenBLAS and on the managed kernel, against a plain triple loop in double precision.</summary>
public class GemmTests
{
    public static TheoryData<GemmBackend> Backends()
    {
        var data = new TheoryData<GemmBackend> { GemmBackend.Managed };
        if (Gemm.OpenBlasAvailable)
        {
            data.Add(GemmBackend.OpenBlas);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Every_transpose_and_odd_sizes_match_the_reference(GemmBackend backend)
    {
        var random = new Random(7);
        foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 600, 150), (130, 9, 257) })
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    float[] a = Random(random, m * k);
                    float[] b = Random(random, k * n);
                    float[] c = Random(random, m * n);
                    double[] expected = Reference(ta, tb, m, n, k, 0.5f, a, b, -2f, c);
                    Gemm.Multiply(ta, tb, m, n, k, 0.5f, a, b, -2f, c, backend);
                    for (int i = 0; i < c.Length; i++)
                    {
                        Assert.True(Math.Abs(c[i] - expected[i]) <= 1e-4 * (1 + Math.Abs(expected[i])),
                            $"{backend} m {m} n {n} k {k} transposeA {ta} transposeB {tb}: C[{i}] = {c[i]}, expected {expected[i]}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Beta_zero_ignores_what_C_held_even_NaN(GemmBackend backend)
    {
        float[] a = [1, 2, 3, 4];
        float[] b = [5, 6, 7, 8];
        float[] c = [float.NaN, float.NaN, float.NaN, float.NaN];
        Gemm.Multiply(false, false, 2, 2, 2, 1f, a, b, 0f, c, backend);
        Assert.Equal([19f, 22f, 43f, 50f], c);
    }

    [Fact]
    public void A_buffer_too_small_for_its_shape_is_refused_naming_it()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, true, 2, 3, 4, 1f, new float[8], new float[11], 0f, new float[6], GemmBackend.Managed));
        Assert.Contains("matrix b must hold 3 x 4 = 12 values, it holds 11", ex.Message, StringComparison.Ordinal);
    }

    private static float[] Random(Random random, int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

    private static double[] Reference(bool ta, bool tb, int m, int n, int k, float alpha, float[] a, float[] b, float beta, float[] c)
    {
        var result = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    sum += (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                }
                result[i * n + j] = alpha * sum + beta * (double)c[i * n + j];
            }
        }
        return result;
    }
}
