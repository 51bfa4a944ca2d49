using Google.Protobuf;
using ParameterServer.Apps.Yt8m.Data.Protos;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.Yt8m.Data;

/// <summary>One video of YouTube-8M's video-level data: its id, its label ids, and the mean of its frames' features.</summary>
public sealed record Video(string Id, int[] Labels, float[] MeanRgb, float[] MeanAudio)
{
    public const int RgbSize = 1024;
    public const int AudioSize = 128;
    public const int FeatureSize = RgbSize + AudioSize;
}

/// <summary>The tf.train.Example form of a video: features <c>id</c> (bytes), <c>labels</c> (int64 list), <c>mean_rgb</c> and <c>mean_audio</c> (float lists).</summary>
public static class VideoExamples
{
    /// <summary>Reads a video from a record; throws <see cref="BadRecordException"/> saying what is wrong with it.</summary>
    public static Video Parse(ReadOnlySpan<byte> bytes, int vocabulary, string path, long record)
    {
        Example example;
        try
        {
            example = Example.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new BadRecordException(path, record, $"not a tf.train.Example: {e.Message}");
        }
        var features = example.Features?.Feature ?? throw new BadRecordException(path, record, "the example has no features");
        Feature Required(string name) => features.TryGetValue(name, out var feature) ? feature
            : throw new BadRecordException(path, record, $"feature '{name}' is missing (it has {string.Join(", ", features.Keys.Order(StringComparer.Ordinal))})");
        float[] Floats(string name, int size)
        {
            var feature = Required(name);
            if (feature.KindCase != Feature.KindOneofCase.FloatList)
            {
                throw new BadRecordException(path, record, $"feature '{name}' is a {feature.KindCase}, not a float list");
            }
            if (feature.FloatList.Value.Count != size)
            {
                throw new BadRecordException(path, record, $"feature '{name}' has {feature.FloatList.Value.Count} floats; video-level '{name}' has {size}");
            }
            var values = new float[size];
            feature.FloatList.Value.CopyTo(values, 0);
            return values;
        }
        var id = Required("id");
        if (id.KindCase != Feature.KindOneofCase.BytesList || id.BytesList.Value.Count != 1)
        {
            throw new BadRecordException(path, record, "feature 'id' must be one bytes value");
        }
        var labelsFeature = Required("labels");
        if (labelsFeature.KindCase != Feature.KindOneofCase.Int64List)
        {
            throw new BadRecordException(path, record, $"feature 'labels' is a {labelsFeature.KindCase}, not an int64 list");
        }
        var labels = new int[labelsFeature.Int64List.Value.Count];
        for (int i = 0; i < labels.Length; i++)
        {
            long label = labelsFeature.Int64List.Value[i];
            if (label < 0 || label >= vocabulary)
            {
                throw new BadRecordException(path, record, $"label {label} is outside the vocabulary 0..{vocabulary - 1}");
            }
            labels[i] = (int)label;
        }
        return new Video(id.BytesList.Value[0].ToStringUtf8(), labels, Floats("mean_rgb", Video.RgbSize), Floats("mean_audio", Video.AudioSize));
    }

    /// <summary>The record bytes of a video (what the generator writes).</summary>
    public static byte[] Serialize(Video video)
    {
        ArgumentNullException.ThrowIfNull(video);
        var features = new Features();
        features.Feature["id"] = new Feature { BytesList = new BytesList { Value = { ByteString.CopyFromUtf8(video.Id) } } };
        var labels = new Int64List();
        labels.Value.AddRange(video.Labels.Select(l => (long)l));
        features.Feature["labels"] = new Feature { Int64List = labels };
        var rgb = new FloatList();
        rgb.Value.AddRange(video.MeanRgb);
        features.Feature["mean_rgb"] = new Feature { FloatList = rgb };
        var audio = new FloatList();
        audio.Value.AddRange(video.MeanAudio);
        features.Feature["mean_audio"] = new Feature { FloatList = audio };
        return new Example { Features = features }.ToByteArray();
    }
}

/// <summary>
/// The videos of TFRecord shards, in order. A record with bad content (CRC of its bytes, not an Example, a missing or
/// misshapen feature, a label beyond the vocabulary) stops the read with a <see cref="DataFormatException"/> naming
/// the file and record, or, with <c>skipBadRecords</c>, is counted in <see cref="Skipped"/> and passed over. Damaged
/// framing (a truncated file, a length whose CRC fails) always stops it.
/// </summary>
public sealed class VideoReader(IReadOnlyList<string> files, int vocabulary, bool skipBadRecords) : IDisposable
{
    private int _next;
    private TfRecordReader? _current;

    /// <summary>Bad records passed over (with skipBadRecords).</summary>
    public long Skipped { get; private set; }

    /// <summary>The first bad record passed over, for the log.</summary>
    public string? FirstSkipped { get; private set; }

    public bool TryRead(out Video video)
    {
        while (true)
        {
            if (_current is null)
            {
                if (_next >= files.Count)
                {
                    video = null!;
                    return false;
                }
                _current = new TfRecordReader(files[_next++]);
            }
            try
            {
                if (!_current.TryRead(out var bytes))
                {
                    _current.Dispose();
                    _current = null;
                    continue;
                }
                video = VideoExamples.Parse(bytes.Span, vocabulary, _current.Path, _current.RecordNumber);
                return true;
            }
            catch (BadRecordException e) when (skipBadRecords)
            {
                Skipped++;
                FirstSkipped ??= e.Message;
            }
            catch (BadRecordException e)
            {
                throw new DataFormatException($"{e.Message} (--skip-bad-records counts such records and goes on)");
            }
        }
    }

    public void Dispose() => _current?.Dispose();
}
