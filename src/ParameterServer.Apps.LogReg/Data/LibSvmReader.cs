using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using ParameterServer.Core.Cluster;
using ParameterServer.Hosting;

namespace ParameterServer.Apps.LogReg.Data;

/// <summary>How LIBSVM rows become keys.</summary>
public sealed record LibSvmOptions
{
    /// <summary>0: feature index i becomes key i. Otherwise keys are 1 + (mix(i) mod 2^HashBits).</summary>
    public int HashBits { get; init; }

    /// <summary>Count and skip malformed lines instead of stopping at the first.</summary>
    public bool SkipBadLines { get; init; }

    /// <summary>Add a constant feature (key <see cref="LibSvmReader.BiasKey"/>, value 1) to every row.</summary>
    public bool Bias { get; init; } = true;

    /// <summary>
    /// The fraction of rows held out for validation (0: none), chosen by a hash of each line's position in the file,
    /// so the same rows every pass and whatever the sharding.
    /// </summary>
    public double HoldoutFraction { get; init; }

    /// <summary>With a holdout: read the held-out rows instead of the others.</summary>
    public bool ReadHeldOut { get; init; }

    /// <summary>Whether the line at byte <paramref name="offset"/> is on the side this reader reads.</summary>
    internal bool Reads(long offset) =>
        HoldoutFraction <= 0 || (ParameterServer.Core.Cluster.Hashing.Mix64((ulong)offset) % 1_000_000 < HoldoutFraction * 1_000_000) == ReadHeldOut;
}

/// <summary>
/// Streams one shard of a LIBSVM / SVMlight file (<c>label index:value ...</c>, labels +1/-1 or 1/0, optional
/// <c>qid:</c> and trailing <c># comment</c>) into minibatches. Plain files are split by byte ranges aligned to
/// lines, so a worker reads only its part; gzip files cannot seek, so every worker decompresses the stream and
/// keeps every W-th line. Memory is one read buffer, whatever the file size.
/// </summary>
public sealed class LibSvmReader : IDisposable
{
    /// <summary>The bias feature's key (LIBSVM feature indices start at 1, so 0 is free).</summary>
    public const ulong BiasKey = 0;

    private readonly string _path;
    private readonly LibSvmOptions _options;
    private readonly Stream _stream;
    private readonly bool _gzip;
    private readonly int _shard;
    private readonly int _shards;
    private readonly long _end; // plain files: lines starting at or after this offset belong to the next shard
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
    private int _start;
    private int _filled;
    private long _bufferOffset; // file offset of _buffer[0] (plain files)
    private long _lineNumber;   // gzip: exact line number; plain: counted only when an error needs it
    private bool _eof;
    private readonly long _begin;
    private readonly long _length;

    public LibSvmReader(string path, int shard, int shards, LibSvmOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, shards);
        _path = path;
        _options = options ?? new LibSvmOptions();
        _shard = shard;
        _shards = shards;
        if (!File.Exists(path))
        {
            throw new DataFormatException($"data file '{path}' does not exist");
        }
        long length = new FileInfo(path).Length;
        if (length == 0)
        {
            throw new DataFormatException($"data file '{path}' is empty");
        }
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        _length = length;
        _gzip = IsGzip(file);
        if (_gzip)
        {
            _stream = new GZipStream(file, CompressionMode.Decompress);
            _end = long.MaxValue;
            return;
        }
        _stream = file;
        _length = length;
        long begin = length * shard / shards;
        _begin = begin;
        _end = length * (shard + 1) / shards;
        if (begin > 0)
        {
            // Start at the first line that begins at or after `begin`: skip through the newline before it.
            file.Position = begin - 1;
            _bufferOffset = begin - 1;
            SkipToNextLine();
        }
    }

    /// <summary>Rows read (not counting skipped bad lines).</summary>
    public long Rows { get; private set; }

    public long BadLines { get; private set; }

    public string Path => _path;

    /// <summary>How much of this shard has been read, 0..1 (gzip: of the compressed file).</summary>
    public double Progress => _gzip
        ? Math.Min(1, ((GZipStream)_stream).BaseStream.Position / (double)Math.Max(1, _length))
        : Math.Clamp((_bufferOffset + _start - _begin) / (double)Math.Max(1, _end - _begin), 0, 1);

    private static bool IsGzip(FileStream file)
    {
        Span<byte> magic = stackalloc byte[2];
        int n = file.Read(magic);
        file.Position = 0;
        return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    }

    private void SkipToNextLine()
    {
        while (true)
        {
            int newline = _buffer.AsSpan(_start, _filled - _start).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                _start += newline + 1;
                return;
            }
            _start = _filled;
            if (!Fill())
            {
                return;
            }
        }
    }

    /// <summary>Reads more bytes, keeping the unconsumed tail. False at end of file.</summary>
    private bool Fill()
    {
        if (_eof)
        {
            return false;
        }
        int tail = _filled - _start;
        if (_start > 0)
        {
            _buffer.AsSpan(_start, tail).CopyTo(_buffer);
            _bufferOffset += _start;
            _start = 0;
            _filled = tail;
        }
        if (_filled == _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2); // a line longer than the buffer
            _buffer.AsSpan(0, _filled).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }
        int read = _stream.Read(_buffer, _filled, _buffer.Length - _filled);
        if (read == 0)
        {
            _eof = true;
            return false;
        }
        _filled += read;
        return true;
    }

    /// <summary>Fills <paramref name="batch"/> with up to <paramref name="maxRows"/> rows of this shard. False when the shard is done.</summary>
    public bool ReadBatch(MiniBatch batch, int maxRows)
    {
        batch.Clear();
        while (batch.Rows < maxRows && TryReadLine(out var line, out long lineOffset))
        {
            if ((_gzip && (_lineNumber - 1) % _shards != _shard) || !_options.Reads(lineOffset))
            {
                continue;
            }
            ParseInto(batch, line, lineOffset);
        }
        if (batch.Rows == 0)
        {
            return false;
        }
        batch.Index();
        return true;
    }

    private bool TryReadLine(out ReadOnlySpan<byte> line, out long offset)
    {
        while (true)
        {
            if (!_gzip && _bufferOffset + _start >= _end)
            {
                line = default;
                offset = 0;
                return false;
            }
            var available = _buffer.AsSpan(_start, _filled - _start);
            int newline = available.IndexOf((byte)'\n');
            if (newline >= 0 || (_eof && available.Length > 0))
            {
                int length = newline >= 0 ? newline : available.Length;
                line = available[..length];
                offset = _bufferOffset + _start;
                _start += newline >= 0 ? newline + 1 : length;
                _lineNumber++;
                return true;
            }
            if (!Fill() && _filled - _start == 0)
            {
                line = default;
                offset = 0;
                return false;
            }
        }
    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r';

    /// <summary>
    /// Parses one line in a single pass over its bytes (this is most of a worker's time): integers are read
    /// digit by digit, the common value "1" without a float parse; anything unusual falls back to Utf8Parser.
    /// </summary>
    private void ParseInto(MiniBatch batch, ReadOnlySpan<byte> line, long offset)
    {
        int hash = line.IndexOf((byte)'#');
        if (hash >= 0)
        {
            line = line[..hash];
        }
        int i = 0;
        int n = line.Length;
        while (i < n && IsSpace(line[i]))
        {
            i++;
        }
        if (i == n)
        {
            return; // blank or comment-only line
        }
        int labelStart = i;
        while (i < n && !IsSpace(line[i]))
        {
            i++;
        }
        var labelText = line[labelStart..i];
        if (!Utf8Parser.TryParse(labelText, out float label, out int used) || used != labelText.Length || !float.IsFinite(label))
        {
            Bad(batch, offset, $"label '{Text(labelText)}' is not a number (expected +1/-1 or 1/0)", started: false);
            return;
        }
        batch.BeginRow(label > 0 ? 1f : 0f);
        if (_options.Bias)
        {
            batch.Add(BiasKey, 1f);
        }
        while (true)
        {
            while (i < n && IsSpace(line[i]))
            {
                i++;
            }
            if (i == n)
            {
                break;
            }
            int tokenStart = i;
            ulong index = 0;
            int digits = 0;
            while (i < n && (uint)(line[i] - '0') <= 9 && digits < 19)
            {
                index = index * 10 + (uint)(line[i] - '0');
                digits++;
                i++;
            }
            if (digits == 0 || i == n || line[i] != (byte)':')
            {
                // Not "digits:": qid:N, or an error worth a precise message.
                int end = tokenStart;
                while (end < n && !IsSpace(line[end]))
                {
                    end++;
                }
                var token = line[tokenStart..end];
                i = end;
                int colon = token.IndexOf((byte)':');
                if (colon >= 0 && token[..colon].SequenceEqual("qid"u8))
                {
                    continue;
                }
                string problem = colon < 0 ? $"'{Text(token)}' is not index:value" : $"feature index '{Text(token[..colon])}' is not a positive integer";
                Bad(batch, offset, problem);
                return;
            }
            if (index == 0)
            {
                Bad(batch, offset, "feature index 0 is not allowed (LIBSVM indices start at 1)");
                return;
            }
            i++; // ':'
            float value;
            if (i < n && line[i] == (byte)'1' && (i + 1 == n || IsSpace(line[i + 1])))
            {
                value = 1f; // binary features: the common case
                i++;
            }
            else
            {
                int valueStart = i;
                while (i < n && !IsSpace(line[i]))
                {
                    i++;
                }
                var valueText = line[valueStart..i];
                if (!Utf8Parser.TryParse(valueText, out value, out used) || used != valueText.Length || !float.IsFinite(value))
                {
                    Bad(batch, offset, $"value '{Text(valueText)}' of feature {index} is not a finite number");
                    return;
                }
            }
            batch.Add(KeyOf(index), value);
        }
        batch.EndRow();
        Rows++;
    }

    /// <summary>The key of a LIBSVM feature index under the reader's hashing option.</summary>
    public ulong KeyOf(ulong index) => _options.HashBits == 0 ? index : 1 + (Hashing.Mix64(index) & ((1UL << _options.HashBits) - 1));

    private void Bad(MiniBatch batch, long offset, string problem, bool started = true)
    {
        if (started)
        {
            batch.AbandonRow();
        }
        BadLines++;
        if (!_options.SkipBadLines)
        {
            throw DataFormatException.AtLine(_path, LineNumberAt(offset), problem + " (use --skip-bad-lines to skip such lines)");
        }
    }

    /// <summary>1-based line number of the line starting at <paramref name="offset"/>; plain files count newlines only now.</summary>
    private long LineNumberAt(long offset)
    {
        if (_gzip)
        {
            return _lineNumber;
        }
        using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        long lines = 1;
        long left = offset;
        while (left > 0)
        {
            int read = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (read == 0)
            {
                break;
            }
            lines += buffer.AsSpan(0, read).Count((byte)'\n');
            left -= read;
        }
        ArrayPool<byte>.Shared.Return(buffer);
        return lines;
    }

    private static string Text(ReadOnlySpan<byte> bytes) =>
        System.Text.Encoding.UTF8.GetString(bytes.Length > 40 ? bytes[..40] : bytes) + (bytes.Length > 40 ? "..." : "");

    /// <summary>Counts the rows of a shard without parsing them (sync training agrees on the rounds per epoch).</summary>
    public static long CountRows(string path, int shard, int shards, LibSvmOptions options)
    {
        using var reader = new LibSvmReader(path, shard, shards, options with { SkipBadLines = true });
        long rows = 0;
        while (reader.TryReadLine(out var line, out long offset))
        {
            if ((reader._gzip && (reader._lineNumber - 1) % shards != shard) || !options.Reads(offset))
            {
                continue;
            }
            if (!line.Trim(" \t\r"u8).IsEmpty && line.TrimStart(" \t"u8)[0] != (byte)'#')
            {
                rows++;
            }
        }
        return rows;
    }

    public void Dispose()
    {
        _stream.Dispose();
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
