using System.Numerics;
using System.Runtime.InteropServices;

namespace ParameterServer.Nn.Kernels;

/// <summary>Which matrix-product implementation <see cref="Gemm"/> runs.</summary>
public enum GemmBackend
{
    /// <summary>OpenBLAS's <c>cblas_sgemm</c> (Debian's <c>libopenblas0</c>), one thread per call.</summary>
    OpenBlas,

    /// <summary>A blocked SIMD kernel in C#: used when OpenBLAS cannot be loaded, or when PS_BLAS=managed.</summary>
    Managed,
}

/// <summary>
/// Single-precision matrix products on row-major matrices: C = alpha * op(A) * op(B) + beta * C, where op(X) is X or
/// its transpose. Runs OpenBLAS when it can be loaded (libopenblas.so.0) and a managed blocked kernel otherwise.
/// OpenBLAS is held to one thread: the workers and servers of a job share the machine's cores, and each process
/// running one thread per core would oversubscribe them.
/// </summary>
public static class Gemm
{
    private static readonly bool OpenBlasLoaded = TryLoadOpenBlas();

    /// <summary>The implementation calls run on by default (<see cref="GemmBackend.OpenBlas"/> when it loaded).</summary>
    public static GemmBackend DefaultBackend { get; } =
        OpenBlasLoaded && !string.Equals(Environment.GetEnvironmentVariable("PS_BLAS"), "managed", StringComparison.OrdinalIgnoreCase)
            ? GemmBackend.OpenBlas : GemmBackend.Managed;

    /// <summary>Whether OpenBLAS could be loaded on this machine.</summary>
    public static bool OpenBlasAvailable => OpenBlasLoaded;

    /// <summary>
    /// C (m x n) = alpha * op(A) * op(B) + beta * C. op(A) is m x k: A is m x k, or k x m when <paramref name="transposeA"/>;
    /// op(B) is k x n: B is k x n, or n x k when <paramref name="transposeB"/>. All row-major and dense.
    /// </summary>
    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c) =>
        Multiply(transposeA, transposeB, m, n, k, alpha, a, b, beta, c, DefaultBackend);

    /// <summary>The same on a chosen implementation (tests and benchmarks compare them).</summary>
    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c, GemmBackend backend)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(m), $"matrix sizes must not be negative: m {m}, n {n}, k {k}");
        }
        CheckLength(nameof(a), a.Length, transposeA ? k : m, transposeA ? m : k);
        CheckLength(nameof(b), b.Length, transposeB ? n : k, transposeB ? k : n);
        CheckLength(nameof(c), c.Length, m, n);
        if (m == 0 || n == 0)
        {
            return;
        }
        if (backend == GemmBackend.OpenBlas)
        {
            if (!OpenBlasLoaded)
            {
                throw new InvalidOperationException("OpenBLAS is not available here (libopenblas.so.0 did not load): install libopenblas0, or use GemmBackend.Managed");
            }
            unsafe
            {
                fixed (float* pa = a, pb = b, pc = c)
                {
                    NativeMethods.Sgemm(RowMajor, transposeA ? Trans : NoTrans, transposeB ? Trans : NoTrans, m, n, k, alpha,
                        pa, transposeA ? m : k, pb, transposeB ? k : n, beta, pc, n);
                }
            }
            return;
        }
        ManagedGemm.Multiply(transposeA, transposeB, m, n, k, alpha, a, b, beta, c);
    }

    private static void CheckLength(string name, int length, int rows, int columns)
    {
        if (length < (long)rows * columns)
        {
            throw new ArgumentException($"matrix {name} must hold {rows} x {columns} = {(long)rows * columns} values, it holds {length}", name);
        }
    }

    private const int RowMajor = 101;
    private const int NoTrans = 111;
    private const int Trans = 112;

    private static bool TryLoadOpenBlas()
    {
        if (!NativeLibrary.TryLoad("libopenblas.so.0", typeof(Gemm).Assembly, DllImportSearchPath.SafeDirectories, out var handle))
        {
            return false;
        }
        if (NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", out var setThreads))
        {
            unsafe
            {
                ((delegate* unmanaged<int, void>)setThreads)(1);
            }
        }
        return NativeLibrary.TryGetExport(handle, "cblas_sgemm", out NativeMethods.SgemmEntry);
    }

    private static unsafe class NativeMethods
    {
        public static nint SgemmEntry;

        public static void Sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc) =>
            ((delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)SgemmEntry)(
                order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}

/// <summary>
/// The managed matrix product: C rows are accumulated as alpha * A[i, p] * B row p (a SIMD axpy over n), in blocks of
/// k and n that keep a panel of B in cache. A transposed operand is read with a stride (A) or packed once per call
/// into pooled memory (B), so the inner loop always runs over contiguous memory.
/// </summary>
internal static class ManagedGemm
{
    private const int BlockK = 128;
    private const int BlockN = 512;

    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c)
    {
        var cm = c[..(m * n)];
        if (beta == 0)
        {
            cm.Clear();
        }
        else if (beta != 1)
        {
            for (int i = 0; i < cm.Length; i++)
            {
                cm[i] *= beta;
            }
        }
        if (k == 0 || alpha == 0)
        {
            return;
        }
        float[]? packed = null;
        try
        {
            if (transposeB)
            {
                // B is n x k: pack it as k x n so the inner loop reads rows of op(B).
                packed = System.Buffers.ArrayPool<float>.Shared.Rent(k * n);
                for (int j = 0; j < n; j++)
                {
                    for (int p = 0; p < k; p++)
                    {
                        packed[p * n + j] = b[j * k + p];
                    }
                }
                b = packed.AsSpan(0, k * n);
            }
            for (int p0 = 0; p0 < k; p0 += BlockK)
            {
                int p1 = Math.Min(k, p0 + BlockK);
                for (int j0 = 0; j0 < n; j0 += BlockN)
                {
                    int width = Math.Min(n, j0 + BlockN) - j0;
                    for (int i = 0; i < m; i++)
                    {
                        var cRow = c.Slice(i * n + j0, width);
                        for (int p = p0; p < p1; p++)
                        {
                            float aip = alpha * (transposeA ? a[p * m + i] : a[i * k + p]);
                            if (aip != 0)
                            {
                                Axpy(aip, b.Slice(p * n + j0, width), cRow);
                            }
                        }
                    }
                }
            }
        }
        finally
        {
            if (packed is not null)
            {
                System.Buffers.ArrayPool<float>.Shared.Return(packed);
            }
        }
    }

    /// <summary>y += alpha * x.</summary>
    private static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var va = new Vector<float>(alpha);
            var vx = MemoryMarshal.Cast<float, Vector<float>>(x);
            var vy = MemoryMarshal.Cast<float, Vector<float>>(y);
            for (int v = 0; v < vx.Length; v++)
            {
                vy[v] += va * vx[v];
            }
            i = vx.Length * Vector<float>.Count;
        }
        for (; i < x.Length; i++)
        {
            y[i] += alpha * x[i];
        }
    }
}
