using System.IO.Compression;
using ParameterServer.Nn.Data;
using ParameterServer.TestKit;

namespace ParameterServer.Tests.Nn;

/// <summary>The idx reader on the real MNIST files and on damaged ones: errors name the file and what is wrong.</summary>
public sealed class MnistTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-idx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_MNIST_test_set_loads_from_its_gzip_files()
    {
        var test = Mnist.LoadDirectory(SharedData.MnistDirectory, train: false);
        Assert.Equal(10_000, test.Count);
        Assert.Equal((28, 28), (test.Rows, test.Columns));
        Assert.Equal(10_000 * 784, test.Pixels.Length);
        Assert.Equal(7, test.Labels[0]); // the first test digit of MNIST is a 7
        Assert.Equal(Enumerable.Range(0, 10).Select(d => (byte)d), test.Labels.Distinct().Order());
        Assert.Equal(0f, test.Pixels.Min());
        Assert.Equal(1f, test.Pixels.Max());
    }

    [Fact]
    public void Plain_and_gzip_files_read_the_same()
    {
        byte[] file = Idx([2, 2, 3], Enumerable.Range(0, 12).Select(i => (byte)(i * 20)).ToArray());
        File.WriteAllBytes(Path.Combine(_dir, "plain"), file);
        using (var gz = new GZipStream(File.Create(Path.Combine(_dir, "packed")), CompressionLevel.Fastest))
        {
            gz.Write(file);
        }
        var plain = IdxFile.Read(Path.Combine(_dir, "plain"));
        var packed = IdxFile.Read(Path.Combine(_dir, "packed"));
        Assert.Equal([2, 2, 3], plain.Shape);
        Assert.Equal(6, plain.ItemSize);
        Assert.Equal(plain.Values, packed.Values);
    }

    [Fact]
    public void A_wrong_magic_number_names_the_file()
    {
        string path = Path.Combine(_dir, "labels");
        File.WriteAllBytes(path, [0x50, 0x4B, 0x03, 0x04, 0, 0, 0, 0]);
        var ex = Assert.Throws<IdxFormatException>(() => IdxFile.Read(path));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("not an idx file", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_truncated_file_says_how_much_is_missing()
    {
        string path = Path.Combine(_dir, "images");
        File.WriteAllBytes(path, Idx([3, 2, 2], new byte[12])[..^5]);
        var ex = Assert.Throws<IdxFormatException>(() => IdxFile.Read(path));
        Assert.Contains("truncated: the header says 3 x 2 x 2 = 12 values, the file holds 7", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Images_and_labels_of_different_counts_are_refused_naming_both_files()
    {
        string images = Path.Combine(_dir, "images");
        string labels = Path.Combine(_dir, "labels");
        File.WriteAllBytes(images, Idx([3, 2, 2], new byte[12]));
        File.WriteAllBytes(labels, Idx([4], [1, 2, 3, 4]));
        var ex = Assert.Throws<IdxFormatException>(() => Mnist.Load(images, labels));
        Assert.Contains($"{images} holds 3 images but {labels} holds 4 labels", ex.Message, StringComparison.Ordinal);
    }

    private static byte[] Idx(int[] shape, byte[] values)
    {
        var bytes = new List<byte> { 0, 0, 0x08, (byte)shape.Length };
        foreach (int d in shape)
        {
            bytes.AddRange([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        }
        bytes.AddRange(values);
        return bytes.ToArray();
    }
}
