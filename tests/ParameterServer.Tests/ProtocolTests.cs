using FsCheck;
using FsCheck.Fluent;
using ParameterServer.Protocol;

namespace ParameterServer.Tests;

public class ProtocolTests
{
    private const int Max = 1 << 20;

    private static FrameHeader Sample() => new()
    {
        Type = MessageType.PushPull,
        Flags = FrameFlags.KeyRange,
        PayloadLength = 16 + 3 * 2 * 4,
        SenderId = 7,
        RequestId = 0x0102030405060708,
        Timestamp = -5,
        ViewNumber = 9,
        TableId = 3,
        KeyCount = 3,
        RowWidth = 2,
        Error = ErrorCode.WrongOwner,
        ElementType = WireElementType.Float32,
        Aux = 0xdeadbeef,
        Round = long.MaxValue,
    };

    [Fact]
    public void Header_round_trips_every_field()
    {
        var header = Sample();
        var bytes = new byte[FrameHeader.Size];
        header.Write(bytes);
        Assert.Equal(HeaderStatus.Ok, FrameHeader.TryRead(bytes, Max, out var read, out var problem));
        Assert.Null(problem);
        Assert.Equal(header, read);
    }

    [Fact]
    public void Header_layout_is_little_endian_at_documented_offsets()
    {
        var bytes = new byte[FrameHeader.Size];
        Sample().Write(bytes);
        Assert.Equal((byte)'P', bytes[0]);
        Assert.Equal((byte)'S', bytes[1]);
        Assert.Equal(FrameHeader.CurrentVersion, bytes[2]);
        Assert.Equal((byte)MessageType.PushPull, bytes[3]);
        Assert.Equal(64, BitConverter.ToUInt16(bytes, 6));
        Assert.Equal(0x08, bytes[16]); // request id, low byte first
        Assert.Equal(0x01, bytes[23]);
        Assert.Equal(3, BitConverter.ToInt32(bytes, 36));
        Assert.Equal(0xdeadbeef, BitConverter.ToUInt32(bytes, 52));
    }

    [Fact]
    public void Header_round_trips_random_values_property()
    {
        var gen =
            from type in Gen.Elements(Enum.GetValues<MessageType>())
            from flags in Gen.Elements(FrameFlags.None, FrameFlags.KeyRange)
            from payload in Gen.Choose(0, Max - FrameHeader.Size)
            from ids in Gen.Choose(int.MinValue, int.MaxValue).Four()
            from longs in ArbMap.Default.GeneratorFor<long>().Three()
            select new FrameHeader
            {
                Type = type,
                Flags = flags,
                PayloadLength = payload,
                SenderId = ids.Item1,
                RequestId = (ulong)longs.Item1,
                Timestamp = longs.Item2,
                ViewNumber = (uint)ids.Item2,
                TableId = ids.Item3,
                KeyCount = ids.Item4,
                RowWidth = ids.Item1 ^ ids.Item2,
                Error = (ErrorCode)(ushort)ids.Item3,
                ElementType = (WireElementType)(byte)ids.Item4,
                Aux = (uint)ids.Item2,
                Round = longs.Item3,
            };
        Prop.ForAll(gen.ToArbitrary(), header =>
        {
            var bytes = new byte[FrameHeader.Size];
            header.Write(bytes);
            return FrameHeader.TryRead(bytes, Max, out var read, out _) == HeaderStatus.Ok && read.Equals(header);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Short_input_is_incomplete_not_an_error()
    {
        var bytes = new byte[FrameHeader.Size];
        Sample().Write(bytes);
        for (int n = 0; n < FrameHeader.Size; n++)
        {
            Assert.Equal(HeaderStatus.Incomplete, FrameHeader.TryRead(bytes.AsSpan(0, n), Max, out _, out _));
        }
    }

    [Theory]
    [InlineData(0, 0x47, "bad magic")] // 'G' of "GET / HTTP/1.1"
    [InlineData(2, 9, "version 9")]
    [InlineData(6, 65, "header length")]
    [InlineData(5, 0x80, "unsupported frame flags")]
    public void Corrupt_headers_are_rejected_with_a_reason(int offset, byte value, string expected)
    {
        var bytes = new byte[FrameHeader.Size];
        Sample().Write(bytes);
        bytes[offset] = value;
        Assert.Equal(HeaderStatus.Corrupt, FrameHeader.TryRead(bytes, Max, out _, out var problem));
        Assert.Contains(expected, problem);
    }

    [Theory]
    [InlineData(Max - FrameHeader.Size + 1)]
    [InlineData(int.MaxValue)]
    [InlineData(-1)]
    public void Payload_length_is_checked_against_the_limit_before_anything_is_allocated(int payloadLength)
    {
        var header = Sample();
        header.PayloadLength = payloadLength;
        var bytes = new byte[FrameHeader.Size];
        header.Write(bytes);
        Assert.Equal(HeaderStatus.Corrupt, FrameHeader.TryRead(bytes, Max, out _, out var problem));
        Assert.Contains("exceeds the limit", problem);
    }

    [Fact]
    public void Data_payload_sizes_must_match_counts()
    {
        var header = new FrameHeader { Type = MessageType.Push, KeyCount = 3, RowWidth = 2, ElementType = WireElementType.Float32, PayloadLength = 3 * 8 + 3 * 2 * 4 };
        Assert.Null(DataPayload.Validate(header));
        header.PayloadLength -= 4;
        Assert.Contains("need 48", DataPayload.Validate(header));
        header = header with { Type = MessageType.Pull, PayloadLength = 24 };
        Assert.Null(DataPayload.Validate(header));
        header.RowWidth = 0;
        Assert.Contains("width must be positive", DataPayload.Validate(header));
        header = new FrameHeader { Type = MessageType.Push, KeyCount = int.MaxValue, RowWidth = int.MaxValue, ElementType = WireElementType.Float64, PayloadLength = 100 };
        Assert.NotNull(DataPayload.Validate(header)); // no overflow into a small positive number
    }

    [Fact]
    public void Keys_are_read_in_place_as_a_list_or_a_range()
    {
        ulong[] keys = [3, 9, 27];
        var payload = new byte[keys.Length * 8];
        Buffer.BlockCopy(keys, 0, payload, 0, payload.Length);
        var header = new FrameHeader { Type = MessageType.Pull, KeyCount = 3, RowWidth = 1, ElementType = WireElementType.Float32, PayloadLength = payload.Length };
        var list = DataPayload.Keys(header, payload);
        Assert.Equal(27UL, list[2]);
        Assert.Equal(-1, list.FindUnsorted());

        var range = new byte[16];
        BitConverter.TryWriteBytes(range, 100UL);
        BitConverter.TryWriteBytes(range.AsSpan(8), 3UL);
        header.Flags = FrameFlags.KeyRange;
        var r = DataPayload.Keys(header, range);
        Assert.True(r.IsRange);
        Assert.Equal(102UL, r[2]);
    }

    [Theory]
    [InlineData(new ulong[] { 1, 1 }, 1)]
    [InlineData(new ulong[] { 1, 5, 4 }, 2)]
    [InlineData(new ulong[] { 0, 1, ulong.MaxValue }, -1)]
    public void Unsorted_or_duplicate_keys_are_found(ulong[] keys, int expected) =>
        Assert.Equal(expected, KeyList.Of(keys).FindUnsorted());

    [Fact]
    public void Payload_reader_refuses_truncated_input_and_huge_counts()
    {
        var w = new PayloadWriter();
        w.WriteString("héllo");
        w.WriteInt32(1_000_000_000);
        var bytes = w.WrittenSpan.ToArray();
        var reader = new PayloadReader(bytes);
        Assert.Equal("héllo", reader.ReadString());
        try
        {
            reader.ReadCount(1000);
            Assert.Fail("expected a ProtocolException");
        }
        catch (ProtocolException ex)
        {
            Assert.Contains("out of range", ex.Message);
        }
        Assert.Throws<ProtocolException>(() => new PayloadReader(bytes.AsSpan(0, 3).ToArray()).ReadString());
    }
}
