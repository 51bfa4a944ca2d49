using System.Text;

namespace ParameterServer.Nn;

/// <summary>
/// A trained model on disk: the spec that builds it (e.g. <c>lenet5</c>) and every tensor's name, shape and values.
/// Little-endian: "PSNN", version 1, the spec, the tensor count, then per tensor its name, rank, dimensions and floats.
/// </summary>
public static class ModelFile
{
    private const uint Magic = 0x4E4E5350; // "PSNN"
    private const int Version = 1;

    /// <summary>Writes the model's parameters (through a temporary file, so a crash leaves no half-written model).</summary>
    public static void Save(string path, string spec, ITrainableModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        string temporary = path + ".tmp";
        using (var writer = new BinaryWriter(File.Create(temporary), Encoding.UTF8))
        {
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write(spec);
            writer.Write(model.Parameters.Count);
            foreach (var tensor in model.Parameters)
            {
                writer.Write(tensor.Name);
                writer.Write(tensor.Shape.Count);
                foreach (int d in tensor.Shape)
                {
                    writer.Write(d);
                }
                writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.Value.Span));
            }
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The spec a model file was written with (to build the model before <see cref="Load"/>).</summary>
    public static string ReadSpec(string path)
    {
        using var reader = Open(path);
        return reader.ReadString();
    }

    /// <summary>Sets <paramref name="model"/>'s parameters from the file; tensors must match by name and shape, in order.</summary>
    public static void Load(string path, ITrainableModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var reader = Open(path);
        try
        {
            reader.ReadString();
            int count = reader.ReadInt32();
            if (count != model.Parameters.Count)
            {
                throw new InvalidDataException($"{path} holds {count} tensors, the model has {model.Parameters.Count}");
            }
            foreach (var tensor in model.Parameters)
            {
                string name = reader.ReadString();
                int rank = reader.ReadInt32();
                if (rank is < 1 or > 8)
                {
                    throw new InvalidDataException($"{path}: tensor '{name}' has rank {rank}; the file is damaged");
                }
                var shape = new int[rank];
                for (int d = 0; d < rank; d++)
                {
                    shape[d] = reader.ReadInt32();
                }
                if (name != tensor.Name || !shape.SequenceEqual(tensor.Shape))
                {
                    throw new InvalidDataException($"{path} holds tensor '{name}' {ParameterTensor.Describe(shape)} where the model has '{tensor.Name}' {ParameterTensor.Describe(tensor.Shape)}");
                }
                var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.Value.Span);
                reader.BaseStream.ReadExactly(bytes);
            }
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path} ends early: the model file is truncated");
        }
    }

    private static BinaryReader Open(string path)
    {
        var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        try
        {
            if (reader.BaseStream.Length < 8 || reader.ReadUInt32() != Magic)
            {
                throw new InvalidDataException($"{path} is not a model file written by pserver (no PSNN magic number)");
            }
            int version = reader.ReadInt32();
            if (version != Version)
            {
                throw new InvalidDataException($"{path} is a model file of version {version}; this pserver reads version {Version}");
            }
            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }
}
