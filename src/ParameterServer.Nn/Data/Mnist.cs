namespace ParameterServer.Nn.Data;

/// <summary>MNIST-style images with their labels: pixels scaled to [0, 1], row-major, one image after the other.</summary>
public sealed class LabeledImages
{
    internal LabeledImages(float[] pixels, byte[] labels, int rows, int columns)
    {
        Pixels = pixels;
        Labels = labels;
        Rows = rows;
        Columns = columns;
    }

    /// <summary>Count x rows x columns values in [0, 1].</summary>
    public float[] Pixels { get; }

    /// <summary>One class per image.</summary>
    public byte[] Labels { get; }

    public int Rows { get; }

    public int Columns { get; }

    public int Count => Labels.Length;

    /// <summary>Values per image.</summary>
    public int ImageSize => Rows * Columns;
}

/// <summary>Loads MNIST (or a set in its format, such as Fashion-MNIST) from its idx files, gzip-compressed or not.</summary>
public static class Mnist
{
    /// <summary>
    /// Loads the training set (train-images-idx3-ubyte, train-labels-idx1-ubyte) or the test set (t10k-...) from
    /// <paramref name="directory"/>, each with or without ".gz".
    /// </summary>
    public static LabeledImages LoadDirectory(string directory, bool train)
    {
        string prefix = train ? "train" : "t10k";
        return Load(Find(directory, $"{prefix}-images-idx3-ubyte"), Find(directory, $"{prefix}-labels-idx1-ubyte"));
    }

    /// <summary>Loads an images file (count x rows x columns bytes) and its labels file (count bytes); their counts must agree.</summary>
    public static LabeledImages Load(string imagesPath, string labelsPath)
    {
        var images = IdxFile.Read(imagesPath);
        var labels = IdxFile.Read(labelsPath);
        if (images.Shape.Count != 3)
        {
            throw new IdxFormatException($"{imagesPath}: images need 3 dimensions (count, rows, columns), the file has {images.Shape.Count}: {string.Join(" x ", images.Shape)}");
        }
        if (labels.Shape.Count != 1)
        {
            throw new IdxFormatException($"{labelsPath}: labels need 1 dimension (count), the file has {labels.Shape.Count}: {string.Join(" x ", labels.Shape)}");
        }
        if (images.Count != labels.Count)
        {
            throw new IdxFormatException($"{imagesPath} holds {images.Count} images but {labelsPath} holds {labels.Count} labels: they must be the same set");
        }
        var pixels = new float[images.Values.Length];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = images.Values[i] / 255f;
        }
        return new LabeledImages(pixels, labels.Values, images.Shape[1], images.Shape[2]);
    }

    private static string Find(string directory, string name)
    {
        foreach (string candidate in new[] { Path.Combine(directory, name + ".gz"), Path.Combine(directory, name) })
        {
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException($"no {name} or {name}.gz in {directory}: point --data at a folder with the MNIST idx files");
    }
}
