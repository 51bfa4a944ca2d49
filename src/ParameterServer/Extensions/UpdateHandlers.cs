using System.Globalization;

namespace ParameterServer.Extensions;

/// <summary>Factories for the built-in <see cref="IUpdateHandler"/>s and a parser for their text specs.</summary>
public static class UpdateHandlers
{
    /// <summary>values += pushed. The default: aggregate counts, LDA topic counts, sketches.</summary>
    public static IUpdateHandler Sum { get; } = new SumHandler();

    private static readonly IUpdateHandler s_int32Sum = new IntegerSumHandler<int>();
    private static readonly IUpdateHandler s_int64Sum = new IntegerSumHandler<long>();
    private static readonly IUpdateHandler s_int32Max = new IntegerMaxHandler<int>();
    private static readonly IUpdateHandler s_int64Max = new IntegerMaxHandler<long>();

    /// <summary>values += pushed for a table's element type: what "sum" means there (sync rounds add pushes with it).</summary>
    internal static IUpdateHandler SumOf(ElementType element) => element switch
    {
        ElementType.Int32 => s_int32Sum,
        ElementType.Int64 => s_int64Sum,
        _ => Sum,
    };

    /// <summary>
    /// The handler of a table: <paramref name="create"/> (the built-ins and the registered ones) for float32 tables;
    /// integer tables take "sum", which adds integers, or "max", which keeps the larger (idempotent: registers, names).
    /// </summary>
    internal static IUpdateHandler ForTable(Core.Cluster.TableInfo table, Func<string, IUpdateHandler> create) =>
        table.Element switch
        {
            ElementType.Float32 => create(table.Handler),
            ElementType.Int32 or ElementType.Int64 when table.Handler == "sum" => SumOf(table.Element),
            ElementType.Int32 when table.Handler == "max" => s_int32Max,
            ElementType.Int64 when table.Handler == "max" => s_int64Max,
            _ => throw new ArgumentException($"table '{table.Name}' holds {table.Element.ToString().ToLowerInvariant()} values: its handler must be sum or max, not {table.Handler}"),
        };

    private enum Range
    {
        Positive,
        NonNegative,
        UnitInterval, // [0, 1)
    }

    private sealed record ParamDef(string Key, float Default, Range Range);

    private sealed record HandlerDef(string Name, ParamDef[] Params, Func<float[], IUpdateHandler> Create);

    // Parse defaults live here; Create forwards to the validating factories below.
    private static readonly HandlerDef[] s_handlers =
    [
        new("sum", [], _ => Sum),
        new("sgd", [new("lr", 0.1f, Range.Positive), new("l2", 0f, Range.NonNegative)],
            p => Sgd(p[0], p[1])),
        new("adagrad", [new("lr", 0.1f, Range.Positive), new("eps", 1e-6f, Range.Positive)],
            p => AdaGrad(p[0], p[1])),
        new("momentum", [new("lr", 0.05f, Range.Positive), new("mu", 0.9f, Range.UnitInterval)],
            p => Momentum(p[0], p[1])),
        new("ftrl",
            [
                new("alpha", 0.1f, Range.Positive), new("beta", 1f, Range.NonNegative),
                new("l1", 0f, Range.NonNegative), new("l2", 0f, Range.NonNegative),
            ],
            p => Ftrl(p[0], p[1], p[2], p[3])),
        new("prox", [new("l1", 0f, Range.NonNegative), new("l2", 0f, Range.NonNegative)],
            p => ProximalNewton(p[0], p[1])),
        new("adam",
            [
                new("lr", 0.001f, Range.Positive), new("beta1", 0.9f, Range.UnitInterval),
                new("beta2", 0.999f, Range.UnitInterval), new("eps", 1e-8f, Range.Positive),
            ],
            p => Adam(p[0], p[1], p[2], p[3])),
    ];

    private static readonly string s_handlerNames = string.Join(", ", s_handlers.Select(h => h.Name));

    /// <summary>Names of the built-in handlers (what every server knows without registration).</summary>
    internal static IReadOnlyList<string> BuiltInNames { get; } = s_handlers.Select(h => h.Name).ToArray();

    /// <summary>Plain SGD with optional L2 decay: w -= lr * (g + l2 * w).</summary>
    public static IUpdateHandler Sgd(float learningRate, float l2 = 0)
    {
        Require(learningRate, Range.Positive, nameof(learningRate));
        Require(l2, Range.NonNegative, nameof(l2));
        return new SgdHandler(learningRate, l2);
    }

    /// <summary>AdaGrad: n += g^2; w -= lr * g / (sqrt(n) + eps).</summary>
    public static IUpdateHandler AdaGrad(float learningRate, float epsilon = 1e-6f)
    {
        Require(learningRate, Range.Positive, nameof(learningRate));
        Require(epsilon, Range.Positive, nameof(epsilon));
        return new AdaGradHandler(learningRate, epsilon);
    }

    /// <summary>SGD with momentum (the form of Sutskever et al. 2013 that PyTorch uses): v = mu * v + g; w -= lr * v.</summary>
    public static IUpdateHandler Momentum(float learningRate, float momentum = 0.9f)
    {
        Require(learningRate, Range.Positive, nameof(learningRate));
        Require(momentum, Range.UnitInterval, nameof(momentum));
        return new MomentumHandler(learningRate, momentum);
    }

    /// <summary>FTRL-proximal (McMahan et al. 2013, Algorithm 1); stored values are the current weights.</summary>
    public static IUpdateHandler Ftrl(float alpha, float beta = 1, float l1 = 0, float l2 = 0)
    {
        Require(alpha, Range.Positive, nameof(alpha));
        Require(beta, Range.NonNegative, nameof(beta));
        Require(l1, Range.NonNegative, nameof(l1));
        Require(l2, Range.NonNegative, nameof(l2));
        return new FtrlHandler(alpha, beta, l1, l2);
    }

    /// <summary>
    /// A proximal Newton step per coordinate, for batch solvers whose workers push a feature's gradient g and its
    /// curvature bound u summed over their data (the paper's block proximal gradient): on a width-2 table the
    /// stored row is [w, g] and a pushed row [g, u] sets w to argmin_v g (v - w) + u/2 (v - w)^2 + l1 |v| + l2/2 v^2,
    /// that is soft(u w - g, l1) / (u + l2), and keeps g (for the KKT filter and the optimality report). A pushed
    /// row [v, -1] sets w to v instead (a solver's step along a line it searched; one worker pushes each key).
    /// </summary>
    public static IUpdateHandler ProximalNewton(float l1 = 0, float l2 = 0)
    {
        Require(l1, Range.NonNegative, nameof(l1));
        Require(l2, Range.NonNegative, nameof(l2));
        return new ProximalNewtonHandler(l1, l2);
    }

    /// <summary>Adam with bias correction and a per-key step counter.</summary>
    public static IUpdateHandler Adam(float learningRate, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
    {
        Require(learningRate, Range.Positive, nameof(learningRate));
        Require(beta1, Range.UnitInterval, nameof(beta1));
        Require(beta2, Range.UnitInterval, nameof(beta2));
        Require(epsilon, Range.Positive, nameof(epsilon));
        return new AdamHandler(learningRate, beta1, beta2, epsilon);
    }

    /// <summary>
    /// Parses <c>name</c> or <c>name:key=value,key=value</c> (names and keys case-insensitive,
    /// numbers in invariant culture; omitted parameters take their defaults). Accepts every
    /// built-in handler's <see cref="object.ToString"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The spec names an unknown handler or parameter, or a value is not a number or out of range.</exception>
    public static IUpdateHandler Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);

        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string name = (colon < 0 ? spec : spec[..colon]).Trim();
        if (name.Length == 0)
        {
            throw new ArgumentException(
                $"update handler spec '{spec}' has no name: expected one of {s_handlerNames}, optionally followed by :key=value,...",
                nameof(spec));
        }

        HandlerDef def = s_handlers.FirstOrDefault(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"unknown update handler '{name}': expected one of {s_handlerNames}", nameof(spec));

        float[] values = def.Params.Select(p => p.Default).ToArray();
        if (colon >= 0)
        {
            ParseParameters(spec, spec[(colon + 1)..], def, values);
        }

        return def.Create(values);
    }

    private static void ParseParameters(string spec, string parameters, HandlerDef def, float[] values)
    {
        if (def.Params.Length == 0)
        {
            throw new ArgumentException($"update handler '{def.Name}' takes no parameters (got '{spec}')", nameof(spec));
        }

        string keys = string.Join(", ", def.Params.Select(p => p.Key));
        var seen = new bool[def.Params.Length];
        foreach (string item in parameters.Split(','))
        {
            int eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                throw new ArgumentException(
                    $"malformed parameter '{item.Trim()}' in update handler spec '{spec}': expected key=value with key one of {keys}",
                    nameof(spec));
            }

            string key = item[..eq].Trim();
            string text = item[(eq + 1)..].Trim();
            int index = Array.FindIndex(def.Params, p => p.Key.Equals(key, StringComparison.OrdinalIgnoreCase));
            if (index < 0)
            {
                throw new ArgumentException(
                    $"unknown parameter '{key}' for update handler '{def.Name}': expected one of {keys}", nameof(spec));
            }

            ParamDef param = def.Params[index];
            if (seen[index])
            {
                throw new ArgumentException(
                    $"parameter '{param.Key}' given more than once for update handler '{def.Name}'", nameof(spec));
            }

            seen[index] = true;
            if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
            {
                throw new ArgumentException(
                    $"invalid value '{text}' for parameter '{param.Key}' of update handler '{def.Name}': expected a finite number (invariant culture, e.g. 0.01 or 1e-6)",
                    nameof(spec));
            }

            if (!InRange(value, param.Range))
            {
                throw new ArgumentException(
                    $"invalid value '{text}' for parameter '{param.Key}' of update handler '{def.Name}': must be {Describe(param.Range)}",
                    nameof(spec));
            }

            values[index] = value;
        }
    }

    private static bool InRange(float value, Range range) => float.IsFinite(value) && range switch
    {
        Range.Positive => value > 0,
        Range.NonNegative => value >= 0,
        Range.UnitInterval => value is >= 0 and < 1,
        _ => false,
    };

    private static string Describe(Range range) => range switch
    {
        Range.Positive => "> 0",
        Range.NonNegative => ">= 0",
        Range.UnitInterval => "in [0, 1)",
        _ => range.ToString(),
    };

    private static void Require(float value, Range range, string paramName)
    {
        if (!InRange(value, range))
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"{paramName} must be a finite number {Describe(range)}.");
        }
    }
}
