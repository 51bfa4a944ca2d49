using System.Globalization;
using ParameterServer.Apps.LogReg.Data;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.LogReg;

/// <summary>
/// A trained logistic regression model as text (docs/MODEL_FORMAT.md):
/// <code>
/// # pserver logreg model v1
/// hash_bits 0
/// bias_key 0
/// weights 3
/// 0 -0.731
/// 14 0.25
/// 39 -1.5
/// </code>
/// One `key weight` line per nonzero weight, keys ascending; key 0 is the bias; with hash_bits &gt; 0, keys
/// are hashed LIBSVM feature indices (see LibSvmReader.KeyOf). Weights use the shortest round-trip form.
/// </summary>
public sealed class ModelFile
{
    public const string Magic = "# pserver logreg model v1";

    public required int HashBits { get; init; }

    public required IReadOnlyDictionary<ulong, float> Weights { get; init; }

    public static void Write(string path, int hashBits, ReadOnlySpan<ulong> keys, ReadOnlySpan<float> weights)
    {
        string temp = path + ".tmp";
        using (var writer = new StreamWriter(temp))
        {
            int nonzero = 0;
            foreach (float w in weights)
            {
                nonzero += w != 0 ? 1 : 0;
            }
            writer.WriteLine(Magic);
            writer.WriteLine($"hash_bits {hashBits}");
            writer.WriteLine($"bias_key {LibSvmReader.BiasKey}");
            writer.WriteLine($"weights {nonzero}");
            for (int i = 0; i < keys.Length; i++)
            {
                if (weights[i] != 0)
                {
                    writer.Write(keys[i].ToString(CultureInfo.InvariantCulture));
                    writer.Write(' ');
                    writer.WriteLine(weights[i].ToString("R", CultureInfo.InvariantCulture));
                }
            }
        }
        File.Move(temp, path, overwrite: true); // a reader never sees half a model
    }

    public static ModelFile Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new DataFormatException($"model file '{path}' does not exist");
        }
        using var reader = new StreamReader(path);
        long lineNumber = 0;
        string Next(string what)
        {
            lineNumber++;
            return reader.ReadLine() ?? throw DataFormatException.AtLine(path, lineNumber, $"file ends before {what}");
        }
        if (Next("the header") != Magic)
        {
            throw DataFormatException.AtLine(path, 1, $"not a pserver logreg model (the first line must be '{Magic}')");
        }
        int hashBits = int.Parse(Field(Next("hash_bits"), "hash_bits", path, lineNumber), CultureInfo.InvariantCulture);
        Field(Next("bias_key"), "bias_key", path, lineNumber);
        long count = long.Parse(Field(Next("weights"), "weights", path, lineNumber), CultureInfo.InvariantCulture);
        var weights = new Dictionary<ulong, float>();
        for (long i = 0; i < count; i++)
        {
            string line = Next($"weight {i + 1} of {count}");
            var parts = line.Split(' ');
            if (parts.Length != 2 || !ulong.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out ulong key)
                || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float weight) || !float.IsFinite(weight))
            {
                throw DataFormatException.AtLine(path, lineNumber, $"expected 'key weight', got '{line}'");
            }
            weights[key] = weight;
        }
        return new ModelFile { HashBits = hashBits, Weights = weights };
    }

    private static string Field(string line, string name, string path, long lineNumber)
    {
        var parts = line.Split(' ');
        if (parts.Length != 2 || parts[0] != name || !long.TryParse(parts[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
        {
            throw DataFormatException.AtLine(path, lineNumber, $"expected '{name} <integer>', got '{line}'");
        }
        return parts[1];
    }
}
