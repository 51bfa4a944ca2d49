using System.Buffers.Binary;
using System.Text;
using ParameterServer.Apps.Yt8m.Data;
using ParameterServer.Hosting;

namespace ParameterServer.Tests.Yt8m;

/// <summary>
/// The TFRecord reader and the tf.train.Example form of a video, checked against bytes assembled here from the
/// protobuf wire rules and a bitwise CRC-32C (not from our writer), and against damaged files.
/// </summary>
public sealed class VideoRecordTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-yt8m-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // --- an independent encoder: the protobuf wire format by hand, CRC-32C bit by bit ---

    private static uint BitwiseCrc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
            }
        }
        return ~crc;
    }

    private static uint Masked(ReadOnlySpan<byte> data)
    {
        uint crc = BitwiseCrc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    private static byte[] Varint(ulong value)
    {
        var bytes = new List<byte>();
        do
        {
            byte b = (byte)(value & 0x7F);
            value >>= 7;
            bytes.Add(value != 0 ? (byte)(b | 0x80) : b);
        }
        while (value != 0);
        return [.. bytes];
    }

    // A length-delimited field: tag (field << 3 | 2), length, bytes.
    private static byte[] Field(int field, byte[] payload) => [.. Varint((ulong)((field << 3) | 2)), .. Varint((ulong)payload.Length), .. payload];

    private static byte[] FloatListFeature(float[] values)
    {
        var packed = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(packed.AsSpan(i * 4), values[i]);
        }
        return Field(2, Field(1, packed)); // Feature.float_list = 2 { FloatList.value = 1, packed }
    }

    private static byte[] Int64ListFeature(long[] values) => Field(3, Field(1, values.SelectMany(v => Varint((ulong)v)).ToArray()));

    private static byte[] BytesListFeature(string value) => Field(1, Field(1, Encoding.UTF8.GetBytes(value)));

    private static byte[] MapEntry(string key, byte[] feature) => Field(1, [.. Field(1, Encoding.UTF8.GetBytes(key)), .. Field(2, feature)]);

    private static byte[] Example(params (string Key, byte[] Feature)[] features) => Field(1, features.SelectMany(f => MapEntry(f.Key, f.Feature)).ToArray());

    private static byte[] Framed(byte[] record)
    {
        var length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)record.Length);
        var crcs = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(crcs, Masked(length));
        BinaryPrimitives.WriteUInt32LittleEndian(crcs.AsSpan(4), Masked(record));
        return [.. length, .. crcs.AsSpan(0, 4), .. record, .. crcs.AsSpan(4, 4)];
    }

    private static (string, byte[])[] VideoFeatures(string id, long[] labels, int rgb = Video.RgbSize, int audio = Video.AudioSize) =>
    [
        ("id", BytesListFeature(id)),
        ("labels", Int64ListFeature(labels)),
        ("mean_rgb", FloatListFeature(Enumerable.Range(0, rgb).Select(i => i / 1024f).ToArray())),
        ("mean_audio", FloatListFeature(Enumerable.Range(0, audio).Select(i => -i / 128f).ToArray())),
    ];

    private string WriteFile(string name, params byte[][] records)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, records.SelectMany(r => r).ToArray());
        return path;
    }

    [Fact]
    public void Crc32C_matches_the_standard_check_value_and_a_bitwise_reference()
    {
        Assert.Equal(0xE3069283u, TfRecords.Crc32C("123456789"u8)); // the CRC-32C check value
        var random = new Random(1);
        foreach (int length in new[] { 0, 1, 7, 8, 9, 63, 1000 })
        {
            var data = new byte[length];
            random.NextBytes(data);
            Assert.Equal(BitwiseCrc32C(data), TfRecords.Crc32C(data));
        }
    }

    [Fact]
    public void A_record_assembled_by_hand_reads_as_its_video()
    {
        // Feature order in the map is free: this one puts labels last, with a label over 127 (a two-byte varint).
        var features = VideoFeatures("XyZ1", [3, 200, 3861]);
        string path = WriteFile("hand.tfrecord", Framed(Example(features[0], features[2], features[3], features[1])));
        using var reader = new VideoReader([path], 3862, skipBadRecords: false);
        Assert.True(reader.TryRead(out var video));
        Assert.Equal("XyZ1", video.Id);
        Assert.Equal([3, 200, 3861], video.Labels);
        Assert.Equal(1023 / 1024f, video.MeanRgb[1023]);
        Assert.Equal(-127 / 128f, video.MeanAudio[127]);
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void Our_writer_produces_the_bytes_a_reader_of_the_format_expects()
    {
        var video = new Video("abc", [1, 2], Enumerable.Range(0, Video.RgbSize).Select(i => (float)i).ToArray(), new float[Video.AudioSize]);
        string path = Path.Combine(_dir, "ours.tfrecord");
        using (var file = File.Create(path))
        {
            TfRecords.Write(file, VideoExamples.Serialize(video));
            TfRecords.Write(file, VideoExamples.Serialize(video with { Id = "def" }));
        }
        // The framing checked by the independent CRC, then the content by our reader.
        byte[] bytes = File.ReadAllBytes(path);
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(Masked(bytes.AsSpan(0, 8)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(Masked(bytes.AsSpan(12, (int)length)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(12 + (int)length)));
        using var reader = new VideoReader([path], 10, skipBadRecords: false);
        Assert.True(reader.TryRead(out var first));
        Assert.Equal(video.MeanRgb, first.MeanRgb);
        Assert.True(reader.TryRead(out var second));
        Assert.Equal("def", second.Id);
    }

    public static TheoryData<string, string> BadContent => new()
    {
        { "missing mean_rgb", "feature 'mean_rgb' is missing" },
        { "1000 rgb floats", "feature 'mean_rgb' has 1000 floats; video-level 'mean_rgb' has 1024" },
        { "label beyond the vocabulary", "label 4000 is outside the vocabulary 0..3861" },
        { "bad crc of the bytes", "the CRC of its bytes does not match" },
        { "labels as floats", "feature 'labels' is a FloatList, not an int64 list" },
    };

    [Theory]
    [MemberData(nameof(BadContent))]
    public void A_bad_record_names_file_and_record_and_can_be_skipped(string what, string message)
    {
        byte[] good = Framed(Example(VideoFeatures("ok", [1])));
        byte[] bad = what switch
        {
            "missing mean_rgb" => Framed(Example(VideoFeatures("x", [1]).Where(f => f.Item1 != "mean_rgb").ToArray())),
            "1000 rgb floats" => Framed(Example(VideoFeatures("x", [1], rgb: 1000))),
            "label beyond the vocabulary" => Framed(Example(VideoFeatures("x", [4000]))),
            "labels as floats" => Framed(Example(VideoFeatures("x", [1]).Select(f => f.Item1 == "labels" ? ("labels", FloatListFeature([1f])) : f).ToArray())),
            _ => Framed(Example(VideoFeatures("x", [1]))),
        };
        if (what == "bad crc of the bytes")
        {
            bad[20] ^= 0x40; // a bit of the record's bytes flipped
        }
        string path = WriteFile("bad.tfrecord", good, bad, good);
        using (var strict = new VideoReader([path], 3862, skipBadRecords: false))
        {
            Assert.True(strict.TryRead(out _));
            var e = Assert.Throws<DataFormatException>(() => strict.TryRead(out _));
            Assert.Contains($"{path}: record 2: {message}", e.Message);
            Assert.Contains("--skip-bad-records", e.Message);
        }
        using var lenient = new VideoReader([path], 3862, skipBadRecords: true);
        Assert.True(lenient.TryRead(out _));
        Assert.True(lenient.TryRead(out _));
        Assert.False(lenient.TryRead(out _));
        Assert.Equal(1, lenient.Skipped);
    }

    [Fact]
    public void Damaged_framing_stops_the_read_even_when_skipping()
    {
        byte[] good = Framed(Example(VideoFeatures("ok", [1])));
        string truncated = WriteFile("truncated.tfrecord", good, good[..^10]);
        using (var reader = new VideoReader([truncated], 3862, skipBadRecords: true))
        {
            Assert.True(reader.TryRead(out _));
            Assert.Contains("record 2: the file ends inside the record", Assert.Throws<DataFormatException>(() => reader.TryRead(out _)).Message);
        }
        byte[] badLength = [.. good];
        badLength[0] ^= 1;
        string garbled = WriteFile("garbled.tfrecord", badLength);
        using (var reader = new VideoReader([garbled], 3862, skipBadRecords: true))
        {
            Assert.Contains("record 1: the CRC of its length does not match", Assert.Throws<DataFormatException>(() => reader.TryRead(out _)).Message);
        }
        string empty = WriteFile("empty.tfrecord");
        using (var reader = new VideoReader([empty], 3862, skipBadRecords: false))
        {
            Assert.False(reader.TryRead(out _)); // an empty shard holds no videos; the app says so
        }
    }
}

/// <summary>The vocabulary, the generator and the metrics.</summary>
public sealed class Yt8mDataTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ps-yt8m-gen-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string VocabularyPath => TestKit.SharedData.Youtube8mVocabulary;

    [Fact]
    public void Gap_hit_at_1_and_perr_match_a_hand_computed_example()
    {
        var evaluation = new ParameterServer.Apps.Yt8m.Evaluation(top: 2);
        evaluation.Add([0.9f, 0.8f, 0.1f], [0]);
        evaluation.Add([0.7f, 0.95f, 0.2f], [1, 2]);
        // Pooled top 2 of each: 0.95 (true), 0.9 (true), 0.8, 0.7; precision 1 at both hits, 3 true labels in all.
        Assert.Equal(2.0 / 3, evaluation.Gap(), 12);
        Assert.Equal(1.0, evaluation.HitAt1, 12);
        Assert.Equal((1 + 0.5) / 2, evaluation.Perr, 12); // video 2: one of its two labels in its top 2
    }

    [Fact]
    public void The_real_vocabulary_reads_with_its_quoted_descriptions()
    {
        var entities = Vocabulary.Read(VocabularyPath);
        Assert.Equal(3862, entities.Count);
        Assert.Equal(("Game", 788_288L, "Games"), (entities[0].Name, entities[0].TrainVideoCount, entities[0].Vertical));
        Assert.Equal(11_711_620, entities.Sum(e => e.TrainVideoCount)); // PROVENANCE.txt's sum
        string bad = Path.Combine(_dir, "vocabulary.csv");
        File.WriteAllText(bad, "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n0,5,/m/x,A,u,V,,,\"d, e\"\n7,5,/m/y,B,u,V,,,d\n");
        Assert.Contains("vocabulary.csv:3: expected index 1", Assert.Throws<DataFormatException>(() => Vocabulary.Read(bad)).Message);
    }

    [Fact]
    public void Generated_shards_read_back_with_correlated_labels_and_a_known_best_gap()
    {
        var entities = Vocabulary.Read(VocabularyPath);
        var (gap, hit, _) = Yt8mGenerator.Write(new Yt8mSpec { Videos = 600, Shards = 3, ValidationVideos = 300, Seed = 5 }, entities, _dir);
        Assert.InRange(gap, 0.6, 0.99);
        Assert.InRange(hit, 0.7, 1.0);
        var files = Directory.GetFiles(_dir, "train-*.tfrecord").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(3, files.Count);
        using var reader = new VideoReader(files, entities.Count, skipBadRecords: false);
        int videos = 0, labels = 0, sameVertical = 0, pairs = 0;
        while (reader.TryRead(out var video))
        {
            videos++;
            labels += video.Labels.Length;
            Assert.Equal(video.Labels.Distinct().Count(), video.Labels.Length);
            for (int i = 1; i < video.Labels.Length; i++)
            {
                pairs++;
                sameVertical += entities[video.Labels[i]].Vertical == entities[video.Labels[0]].Vertical ? 1 : 0;
            }
        }
        Assert.Equal(600, videos);
        Assert.InRange(labels / (double)videos, 2.5, 3.5); // YouTube-8M: 3.0 labels per video
        Assert.True(sameVertical > 0.7 * pairs, $"{sameVertical} of {pairs} label pairs share a vertical");
        Assert.Contains("true_model_gap", File.ReadAllText(Path.Combine(_dir, "truth.json")));
    }
}
