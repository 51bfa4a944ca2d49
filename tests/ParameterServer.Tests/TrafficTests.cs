using System.Buffers;
using System.Runtime.InteropServices;
using ParameterServer.Protocol;
using ParameterServer.Core.Codecs;
using ParameterServer.Transport;

namespace ParameterServer.Tests;

public class TrafficTests
{
    private static float[] Values(int n, int seed, double zeroFraction)
    {
        var random = new Random(seed);
        var values = new float[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = random.NextDouble() < zeroFraction ? 0f : (float)(random.NextDouble() * 20 - 10) * MathF.Pow(10, random.Next(-3, 3));
        }
        return values;
    }

    private static float[] RoundTrip(string spec, float[] values, int width, out int bytes)
    {
        var codec = CodecSpec.Parse(spec);
        var encoded = new byte[ValueCodec.MaxEncodedBytes(values.Length, width)];
        bytes = ValueCodec.Encode(codec, values, width, encoded);
        var decoded = new float[values.Length];
        ValueCodec.Decode(encoded.AsSpan(0, bytes), width, decoded);
        return decoded;
    }

    [Theory]
    [InlineData("none", 1)]
    [InlineData("zero", 1)]
    [InlineData("zero", 3)]
    [InlineData("lz", 1)]
    [InlineData("zero+lz", 4)]
    public void Lossless_encodings_give_back_every_bit(string spec, int width)
    {
        var values = Values(3000 * width, 1, 0.7);
        values[0] = -0f; // not zero bits: must survive zero suppression
        values[5] = float.NaN;
        values[7] = float.Epsilon;
        values[9] = float.NegativeInfinity;
        var decoded = RoundTrip(spec, values, width, out int bytes);
        Assert.Equal(MemoryMarshal.Cast<float, uint>(values).ToArray(), MemoryMarshal.Cast<float, uint>(decoded).ToArray());
        if (spec.Contains("zero", StringComparison.Ordinal))
        {
            uint[] bits = MemoryMarshal.Cast<float, uint>(values).ToArray();
            int present = Enumerable.Range(0, values.Length / width).Count(r => bits.AsSpan(r * width, width).ContainsAnyExcept(0u));
            Assert.True(bytes <= 16 + (values.Length / width / 8) + 8 + (present * width * 4), $"{present} nonzero rows should take about {present * width * 4} bytes, got {bytes}");
        }
    }

    [Fact]
    public void Float16_and_bfloat16_stay_within_their_rounding_error()
    {
        var values = Values(5000, 2, 0.1).Select(v => Math.Abs(v) < 1e-4f ? 0.5f : Math.Clamp(v, -6e4f, 6e4f)).ToArray();
        var half = RoundTrip("fp16", values, 1, out int halfBytes);
        var brain = RoundTrip("bf16", values, 1, out int brainBytes);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.True(Math.Abs(half[i] - values[i]) <= Math.Abs(values[i]) * Math.Pow(2, -11) * 1.0001, $"fp16 of {values[i]} is {half[i]}");
            Assert.True(Math.Abs(brain[i] - values[i]) <= Math.Abs(values[i]) * Math.Pow(2, -8) * 1.0001, $"bf16 of {values[i]} is {brain[i]}");
        }
        Assert.True(halfBytes <= values.Length * 2 + 16 && brainBytes <= values.Length * 2 + 16);
    }

    [Fact]
    public void Top_k_keeps_the_largest_entries_and_zeroes_the_rest()
    {
        var values = Values(1000, 3, 0);
        var decoded = RoundTrip("topk:0.05", values, 1, out int bytes);
        float threshold = values.Select(MathF.Abs).OrderDescending().ElementAt(49);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(MathF.Abs(values[i]) >= threshold ? values[i] : 0f, decoded[i]);
        }
        Assert.Equal(50, decoded.Count(v => v != 0));
        Assert.True(bytes <= 8 + 4 + 50 * 8);
    }

    [Fact]
    public void One_bit_sends_signs_and_the_means_of_each_sign()
    {
        float[] values = [1, 3, -2, -4, 0.5f, -0.5f];
        var decoded = RoundTrip("1bit", values, 1, out _);
        float positive = (1 + 3 + 0.5f) / 3;
        float negative = (-2 - 4 - 0.5f) / 3;
        Assert.Equal([positive, positive, negative, negative, positive, negative], decoded);
    }

    [Theory]
    [InlineData("topk:0.1")]
    [InlineData("1bit")]
    [InlineData("fp16")]
    public void Error_feedback_carries_what_a_lossy_push_left_out_into_the_next(string spec)
    {
        // After every push: what was sent so far plus what is held back equals what was meant, for every key.
        var codec = CodecSpec.Parse(spec);
        var feedback = new ErrorFeedback(1);
        ulong[] keys = Enumerable.Range(0, 200).Select(i => (ulong)i * 7).ToArray();
        var meantTotal = new double[keys.Length];
        var sentTotal = new double[keys.Length];
        var random = new Random(4);
        var encoded = new byte[ValueCodec.MaxEncodedBytes(keys.Length, 1)];
        for (int step = 0; step < 50; step++)
        {
            var push = keys.Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            for (int i = 0; i < keys.Length; i++)
            {
                meantTotal[i] += push[i];
            }
            var intended = (float[])push.Clone();
            feedback.AddTo(keys, 0, keys.Length, intended);
            int bytes = ValueCodec.Encode(codec, intended, 1, encoded);
            var sent = new float[keys.Length];
            ValueCodec.Decode(encoded.AsSpan(0, bytes), 1, sent);
            feedback.Keep(keys, 0, keys.Length, intended, sent);
            for (int i = 0; i < keys.Length; i++)
            {
                sentTotal[i] += sent[i];
            }
        }
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal(meantTotal[i], sentTotal[i] + feedback.Of(keys[i])[0], 3);
        }
    }

    [Theory]
    [InlineData(new byte[] { 9, 0, 0, 0, 4, 0, 0, 0 })] // unknown stage
    [InlineData(new byte[] { 0, 0, 0, 0, 5, 0, 0, 0 })] // count differs from the frame
    [InlineData(new byte[] { 1, 0, 0, 0, 4, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 })] // bitmap disagrees with its count
    [InlineData(new byte[] { 2, 0, 0, 0, 4, 0, 0, 0, 16, 0, 0, 0, 9, 9, 0, 0 })] // lz that does not decompress
    [InlineData(new byte[] { 0, 3, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0 })] // top-k with more entries than values
    public void Malformed_sections_are_refused_with_a_reason(byte[] section)
    {
        var ex = Assert.Throws<ProtocolException>(() => ValueCodec.Decode(section, 1, new float[4]));
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
    }

    [Fact]
    public void Codec_specs_parse_and_bad_ones_say_what_is_wrong()
    {
        Assert.Equal("zero+fp16+lz", CodecSpec.Parse("zero+fp16+lz").ToString());
        Assert.True(CodecSpec.Parse("none").IsNone);
        Assert.Contains("unknown stage", Assert.Throws<ArgumentException>(() => CodecSpec.Parse("zero+gzip")).Message);
        Assert.Contains("at most one", Assert.Throws<ArgumentException>(() => CodecSpec.Parse("fp16+bf16")).Message);
        var answer = CodecSpec.FromAnswerByte(CodecSpec.Parse("zero+bf16").ToAnswerByte());
        Assert.Equal(CodecSpec.Parse("zero+bf16"), answer);
        Assert.Equal(CodecStages.ZeroSuppress, CodecSpec.FromAnswerByte(CodecSpec.Parse("zero+topk").ToAnswerByte()).Stages); // top-k is for pushes only
    }

    [Fact]
    public void Key_signatures_tell_lists_apart()
    {
        ulong[] a = [1, 2, 3, 4];
        Assert.Equal(KeySignature.Of(1, a), KeySignature.Of(1, [1, 2, 3, 4]));
        Assert.NotEqual(KeySignature.Of(1, a), KeySignature.Of(2, a));
        Assert.NotEqual(KeySignature.Of(1, a), KeySignature.Of(1, [1, 2, 3, 5]));
        Assert.NotEqual(KeySignature.Of(1, a), KeySignature.Of(1, [1, 2, 3]));
        var seen = new HashSet<KeySignature>();
        for (ulong i = 0; i < 100_000; i++)
        {
            Assert.True(seen.Add(KeySignature.Of(0, [i, i + 1])));
        }
    }

    [Fact]
    public void Receiver_cache_evicts_the_least_recently_used_lists_within_its_bytes()
    {
        var cache = new ReceiverKeyCache(capacityBytes: 10 * 100 * sizeof(ulong)); // room for 10 lists of 100 keys
        var lists = Enumerable.Range(0, 30).Select(n => Enumerable.Range(0, 100).Select(i => (ulong)(n * 1000 + i)).ToArray()).ToArray();
        for (int n = 0; n < 10; n++)
        {
            cache.Store(KeySignature.Of(0, lists[n]), lists[n]);
        }
        Assert.True(cache.TryGet(KeySignature.Of(0, lists[0]), 100, out _)); // list 0 is now the most recent
        for (int n = 10; n < 30; n++)
        {
            cache.Store(KeySignature.Of(0, lists[n]), lists[n]);
            Assert.True(cache.Bytes <= cache.CapacityBytes);
        }
        Assert.True(cache.Evictions > 0);
        Assert.False(cache.TryGet(KeySignature.Of(0, lists[1]), 100, out _)); // old and unused: gone
        Assert.True(cache.TryGet(KeySignature.Of(0, lists[29]), 100, out var keys));
        Assert.Equal(lists[29], keys.ToArray());
        Assert.False(cache.TryGet(KeySignature.Of(0, lists[29]), 99, out _)); // the count must match too
    }

    [Fact]
    public void Sender_cache_is_bounded_and_forgets_on_a_miss()
    {
        var cache = new SenderKeyCache(capacity: 16);
        var first = KeySignature.Of(0, [1, 2, 3, 4]);
        Assert.False(cache.TryUse(first)); // first time: send the keys
        Assert.True(cache.TryUse(first));  // then the signature
        cache.Forget(first);
        Assert.False(cache.TryUse(first));
        for (ulong i = 0; i < 100; i++)
        {
            cache.TryUse(KeySignature.Of(0, [i, i + 10, i + 20, i + 30]));
        }
        Assert.True(cache.Evictions > 0);
    }

    [Fact]
    public void A_frame_with_cached_keys_decodes_to_the_plain_frame_and_misses_without_them()
    {
        ulong[] keys = [3, 9, 27, 81, 243];
        float[] values = [1, 0, 0, -2, 0];
        var cache = new ReceiverKeyCache(1 << 20);
        var header = new FrameHeader { Type = MessageType.Push, TableId = 4, KeyCount = keys.Length, RowWidth = 1, ElementType = WireElementType.Float32 };

        // First: keys stored, values zero-suppressed.
        var encoded = new byte[ValueCodec.MaxEncodedBytes(5, 1)];
        int valueBytes = ValueCodec.Encode(CodecSpec.Parse("zero"), values, 1, encoded);
        var payload = MemoryMarshal.AsBytes(keys.AsSpan()).ToArray().Concat(encoded.Take(valueBytes)).ToArray();
        var storing = header with { Flags = FrameFlags.StoreKeys | FrameFlags.Compressed, PayloadLength = payload.Length };
        Assert.Equal(WireEncoding.DecodeResult.Ok, WireEncoding.Decode(storing, payload, cache, 1 << 20, out var plainHeader, out var plain, out _));
        Assert.Equal(FrameFlags.None, plainHeader.Flags);
        Assert.Null(DataPayload.Validate(plainHeader));
        Assert.Equal(keys, MemoryMarshal.Cast<byte, ulong>(plain.AsSpan(FrameHeader.Size, 40)).ToArray());
        Assert.Equal(values, MemoryMarshal.Cast<byte, float>(plain.AsSpan(FrameHeader.Size + 40, 20)).ToArray());

        // Then: the signature alone.
        var signed = new byte[KeySignature.Bytes + 20];
        KeySignature.Of(4, keys).Write(signed);
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(signed.AsSpan(KeySignature.Bytes));
        var cached = header with { Flags = FrameFlags.KeysCached, PayloadLength = signed.Length };
        Assert.Equal(WireEncoding.DecodeResult.Ok, WireEncoding.Decode(cached, signed, cache, 1 << 20, out _, out var again, out _));
        Assert.Equal(plain.AsSpan(FrameHeader.Size, 60).ToArray(), again.AsSpan(FrameHeader.Size, 60).ToArray());

        // Another connection's cache has never seen the list: a miss, answered so the worker sends the keys.
        Assert.Equal(WireEncoding.DecodeResult.Miss, WireEncoding.Decode(cached, signed, new ReceiverKeyCache(1 << 20), 1 << 20, out _, out _, out _));
    }

    [Fact]
    public void A_masked_push_decodes_to_its_kept_rows_only_and_a_bad_bitmap_is_refused()
    {
        ulong[] keys = [3, 9, 27, 81, 243, 729];
        float[] kept = [1.5f, -2f, 0f]; // rows 1, 2 and 4 of the unfiltered list (a kept row may well be zero)
        var cache = new ReceiverKeyCache(1 << 20);
        var header = new FrameHeader { Type = MessageType.Push, TableId = 4, KeyCount = keys.Length, RowWidth = 1, ElementType = WireElementType.Float32 };
        var cacheIt = header with { Type = MessageType.Pull, Flags = FrameFlags.StoreKeys, PayloadLength = 48 };
        Assert.Equal(WireEncoding.DecodeResult.Ok, WireEncoding.Decode(cacheIt, MemoryMarshal.AsBytes(keys.AsSpan()), cache, 1 << 20, out _, out var pull, out _));
        ArrayPool<byte>.Shared.Return(pull!);

        byte[] Masked(int present, ulong bitmap)
        {
            var payload = new byte[KeySignature.Bytes + 16 + (kept.Length * 4)];
            KeySignature.Of(4, keys).Write(payload);
            MemoryMarshal.Write(payload.AsSpan(KeySignature.Bytes), present);
            MemoryMarshal.Write(payload.AsSpan(KeySignature.Bytes + 8), bitmap);
            MemoryMarshal.AsBytes(kept.AsSpan()).CopyTo(payload.AsSpan(KeySignature.Bytes + 16));
            return payload;
        }
        var masked = header with { Flags = FrameFlags.KeysCached | FrameFlags.Masked, PayloadLength = KeySignature.Bytes + 16 + 12 };
        Assert.Equal(WireEncoding.DecodeResult.Ok, WireEncoding.Decode(masked, Masked(3, 0b10110), cache, 1 << 20, out var plainHeader, out var plain, out _));
        Assert.Equal(3, plainHeader.KeyCount);
        Assert.Null(DataPayload.Validate(plainHeader));
        Assert.Equal([9ul, 27, 243], MemoryMarshal.Cast<byte, ulong>(plain.AsSpan(FrameHeader.Size, 24)).ToArray());
        Assert.Equal(kept, MemoryMarshal.Cast<byte, float>(plain.AsSpan(FrameHeader.Size + 24, 12)).ToArray());

        // A count that disagrees with the bitmap, or bits past the list's end, are refused with the reason.
        Assert.Equal(WireEncoding.DecodeResult.Malformed, WireEncoding.Decode(masked, Masked(2, 0b10110), cache, 1 << 20, out _, out _, out string? why));
        Assert.Contains("bitmap", why, StringComparison.Ordinal);
        Assert.Equal(WireEncoding.DecodeResult.Malformed, WireEncoding.Decode(masked, Masked(3, 0b1000110), cache, 1 << 20, out _, out _, out _));
        // Only pushes can be masked.
        Assert.Equal(WireEncoding.DecodeResult.Malformed, WireEncoding.Decode(masked with { Type = MessageType.Pull }, Masked(3, 0b10110), cache, 1 << 20, out _, out _, out _));
    }

    [Fact]
    public void Packed_keys_round_trip_take_few_bytes_for_feature_ids_and_hashed_keys_stay_plain()
    {
        var random = new Random(3);
        var features = Enumerable.Range(0, 2000).Select(_ => (ulong)random.Next(0, 1_000_000)).Distinct().Order().ToArray();
        var section = new byte[KeyPacking.MaxBytes(features.Length)];
        int length = KeyPacking.TryPack(features, section);
        Assert.InRange(length, 1, features.Length * 3); // gaps of ~500 take 2 bytes, against 8
        var back = new ulong[features.Length];
        KeyPacking.Unpack(section.AsSpan(0, length), back);
        Assert.Equal(features, back);
        ulong[] edges = [0, 1, ulong.MaxValue - 1, ulong.MaxValue];
        var edgeSection = new byte[KeyPacking.MaxBytes(4)];
        var edgesBack = new ulong[4];
        KeyPacking.Unpack(edgeSection.AsSpan(0, KeyPacking.TryPack(edges, edgeSection)), edgesBack); // a 10-byte varint in the middle
        Assert.Equal(edges, edgesBack);
        var hashed = Enumerable.Range(0, 100).Select(_ => (ulong)random.NextInt64()).Order().ToArray();
        Assert.Equal(0, KeyPacking.TryPack(hashed, new byte[KeyPacking.MaxBytes(100)]));

        // Through a frame: the keys are stored under the signature of the unpacked list.
        var cache = new ReceiverKeyCache(1 << 20);
        var header = new FrameHeader { Type = MessageType.Pull, TableId = 2, KeyCount = features.Length, RowWidth = 1, ElementType = WireElementType.Float32, Flags = FrameFlags.StoreKeys | FrameFlags.PackedKeys, PayloadLength = length };
        Assert.Equal(WireEncoding.DecodeResult.Ok, WireEncoding.Decode(header, section.AsSpan(0, length), cache, 1 << 24, out var plainHeader, out var plain, out _));
        Assert.Equal(features, MemoryMarshal.Cast<byte, ulong>(plain.AsSpan(FrameHeader.Size, features.Length * 8)).ToArray());
        Assert.True(cache.TryGet(KeySignature.Of(2, features), features.Length, out _));

        // A repeated key, a truncated section and trailing bytes are refused.
        byte[] repeated = [2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
        Assert.Throws<ProtocolException>(() => KeyPacking.Unpack(repeated, new ulong[2]));
        Assert.Throws<ProtocolException>(() => KeyPacking.Unpack(section.AsSpan(0, length), new ulong[features.Length + 1]));
        Assert.Throws<ProtocolException>(() => KeyPacking.Unpack(section.AsSpan(0, length), new ulong[features.Length - 1]));
        Assert.Equal(WireEncoding.DecodeResult.Malformed, WireEncoding.Decode(header with { KeyCount = features.Length + 1 }, section.AsSpan(0, length), cache, 1 << 24, out _, out _, out _));
    }

    [Fact]
    public void Traffic_meter_counts_by_type_and_peer_and_survives_the_heartbeat_encoding()
    {
        var meter = new TrafficMeter();
        var a = meter.Add("server 1");
        var b = meter.Add("server 2");
        a.CountOut((byte)MessageType.Push, 100);
        a.CountOut((byte)MessageType.Push, 50);
        b.CountIn((byte)MessageType.Response, 64);
        var snapshot = meter.Snapshot();
        Assert.Equal(150, snapshot.BytesSent);
        Assert.Equal(64, snapshot.BytesReceived);
        Assert.Equal(2, snapshot.Get(MessageType.Push, PeerTraffic.MessagesOut));
        var w = new PayloadWriter();
        snapshot.Write(w);
        var r = new PayloadReader(w.WrittenSpan);
        var back = TrafficSnapshot.Read(ref r);
        Assert.Equal(150, back.Get(MessageType.Push, PeerTraffic.BytesOut));
        Assert.Equal(64, back.ByPeer["server 2"][PeerTraffic.BytesIn]);
        Assert.Equal(300, TrafficSnapshot.Sum([back, back]).BytesSent);
        // A server's stats carry the same counts as JSON, which the job's report reads back.
        using var json = System.Text.Json.JsonDocument.Parse(System.Text.Json.JsonSerializer.Serialize(snapshot.ToJson()));
        var fromJson = TrafficSnapshot.FromJson(json.RootElement);
        Assert.Equal(2, fromJson.Get(MessageType.Push, PeerTraffic.MessagesOut));
        Assert.Equal(150, fromJson.Get(MessageType.Push, PeerTraffic.BytesOut));
        Assert.Equal(64, fromJson.ByPeer["server 2"][PeerTraffic.BytesIn]);
        Assert.Equal(snapshot.BytesReceived, fromJson.BytesReceived);
    }
}
