
namespace ParameterServer.Core.Codecs;

/// <summary>How values are narrowed before they are sent. Lossless: None. The rest lose precision (see <see cref="ValueCodec"/>).</summary>
internal enum Quantization : byte
{
    None = 0,
    /// <summary>IEEE half precision, round to nearest: relative error at most 2^-11 within [6.1e-5, 65504].</summary>
    Float16 = 1,
    /// <summary>The upper 16 bits of a float32, round to nearest even: relative error at most 2^-8, float32's range.</summary>
    BFloat16 = 2,
    /// <summary>Only the largest entries by magnitude (a fraction of them), with their indices; the rest are sent as 0.</summary>
    TopK = 3,
    /// <summary>The sign of each entry; positives decode to the mean of the positives, negatives to the mean of the negatives.</summary>
    OneBit = 4,
}

/// <summary>Stages of a value encoding; several may be combined.</summary>
[Flags]
internal enum CodecStages : byte
{
    None = 0,
    /// <summary>Rows whose bits are all zero are not sent: a bitmap says which rows are present. Lossless (-0.0 is kept).</summary>
    ZeroSuppress = 1,
    /// <summary>The encoded bytes are compressed with a fast general codec (Zstandard at level 1); kept only when smaller.</summary>
    Lz = 2,
}

/// <summary>A value encoding: optional zero suppression, then quantization, then general compression.</summary>
internal readonly record struct CodecSpec(CodecStages Stages, Quantization Quantization, float TopKFraction = 0.01f)
{
    public static readonly CodecSpec None = new(CodecStages.None, Quantization.None);

    public bool IsNone => Stages == CodecStages.None && Quantization == Quantization.None;

    public bool IsLossy => Quantization != Quantization.None;

    /// <summary>Pull answers may use zero suppression, Lz and float16/bfloat16 (top-k and 1-bit make no sense for weights).</summary>
    public bool SuitsAnswers => Quantization is Quantization.None or Quantization.Float16 or Quantization.BFloat16;

    /// <summary>The one-byte form a pull request carries to ask for its answer encoded so (FrameHeader.AnswerCodec).</summary>
    public byte ToAnswerByte() => SuitsAnswers ? (byte)((byte)Stages | ((byte)Quantization << 2)) : (byte)Stages;

    public static CodecSpec FromAnswerByte(byte value)
    {
        var quantization = (Quantization)(value >> 2);
        return quantization is Quantization.None or Quantization.Float16 or Quantization.BFloat16
            ? new CodecSpec((CodecStages)(value & 3), quantization)
            : None;
    }

    /// <summary>
    /// Parses "none", or stages joined by '+': zero, lz, fp16, bf16, topk[:FRACTION], 1bit. For example "zero+fp16".
    /// Throws <see cref="ArgumentException"/> naming what is wrong.
    /// </summary>
    public static CodecSpec Parse(string text)
    {
        var stages = CodecStages.None;
        var quantization = Quantization.None;
        float fraction = 0.01f;
        foreach (string raw in text.Split('+', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string part = raw.ToLowerInvariant();
            Quantization q = Quantization.None;
            switch (part)
            {
                case "none":
                    continue;
                case "zero":
                    stages |= CodecStages.ZeroSuppress;
                    continue;
                case "lz":
                    stages |= CodecStages.Lz;
                    continue;
                case "fp16":
                    q = Quantization.Float16;
                    break;
                case "bf16":
                    q = Quantization.BFloat16;
                    break;
                case "1bit":
                    q = Quantization.OneBit;
                    break;
                default:
                    if (part == "topk" || part.StartsWith("topk:", StringComparison.Ordinal))
                    {
                        q = Quantization.TopK;
                        if (part.Length > 5 && (!float.TryParse(part[5..], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out fraction) || fraction <= 0 || fraction > 1))
                        {
                            throw new ArgumentException($"compression '{text}': topk takes a fraction in (0, 1], as in topk:0.01");
                        }
                        break;
                    }
                    throw new ArgumentException($"compression '{text}': unknown stage '{raw}' (use none, zero, lz, fp16, bf16, topk[:FRACTION] or 1bit, joined by '+')");
            }
            if (quantization != Quantization.None)
            {
                throw new ArgumentException($"compression '{text}': choose at most one of fp16, bf16, topk and 1bit");
            }
            quantization = q;
        }
        return new CodecSpec(stages, quantization, fraction);
    }

    public override string ToString()
    {
        var parts = new List<string>();
        if ((Stages & CodecStages.ZeroSuppress) != 0)
        {
            parts.Add("zero");
        }
        parts.Add(Quantization switch
        {
            Quantization.Float16 => "fp16",
            Quantization.BFloat16 => "bf16",
            Quantization.TopK => FormattableString.Invariant($"topk:{TopKFraction}"),
            Quantization.OneBit => "1bit",
            _ => "",
        });
        if ((Stages & CodecStages.Lz) != 0)
        {
            parts.Add("lz");
        }
        string joined = string.Join('+', parts.Where(p => p.Length > 0));
        return joined.Length == 0 ? "none" : joined;
    }
}
