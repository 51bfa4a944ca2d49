namespace ParameterServer.Apps.Sketch.Streams;

/// <summary>
/// Item ids 1..N drawn with P(k) proportional to k^-s, by rejection-inversion (Hörmann and Derflinger 1996, as in
/// Apache Commons): O(1) per draw, no table, any s > 0. Deterministic for a seed.
/// </summary>
public sealed class ZipfStream
{
    private readonly long _items;
    private readonly double _exponent;
    private readonly double _hIntegralX1;
    private readonly double _hIntegralItems;
    private readonly double _squeeze;
    private ulong _state;

    public ZipfStream(long items, double exponent, ulong seed)
    {
        if (items < 1 || !(exponent > 0) || double.IsInfinity(exponent))
        {
            throw new ArgumentException($"--items must be at least 1 and --zipf a positive exponent, got {items} and {exponent}");
        }
        _items = items;
        _exponent = exponent;
        _hIntegralX1 = HIntegral(1.5) - 1;
        _hIntegralItems = HIntegral(items + 0.5);
        _squeeze = 2 - HIntegralInverse(HIntegral(2.5) - H(2));
        _state = seed;
    }

    /// <summary>The next id, in 1..N.</summary>
    public long Next()
    {
        while (true)
        {
            double u = _hIntegralItems + (NextDouble() * (_hIntegralX1 - _hIntegralItems));
            double x = HIntegralInverse(u);
            long k = (long)(x + 0.5);
            k = Math.Clamp(k, 1, _items);
            if (k - x <= _squeeze || u >= HIntegral(k + 0.5) - H(k))
            {
                return k;
            }
        }
    }

    private double NextDouble()
    {
        // splitmix64: 53 random bits.
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return ((z ^ (z >> 31)) >> 11) * (1.0 / (1UL << 53));
    }

    private double H(double x) => Math.Exp(-_exponent * Math.Log(x));

    private double HIntegral(double x)
    {
        double logX = Math.Log(x);
        return Helper2((1 - _exponent) * logX) * logX;
    }

    private double HIntegralInverse(double x)
    {
        double t = Math.Max(-1, x * (1 - _exponent));
        return Math.Exp(Helper1(t) * x);
    }

    // log(1 + x) / x and (exp(x) - 1) / x, accurate near 0.
    private static double Helper1(double x) => Math.Abs(x) > 1e-8 ? double.LogP1(x) / x : 1 - (x * (0.5 - (x * ((1.0 / 3) - (0.25 * x)))));

    private static double Helper2(double x) => Math.Abs(x) > 1e-8 ? double.ExpM1(x) / x : 1 + (x * 0.5 * (1 + (x / 3 * (1 + (0.25 * x)))));
}
