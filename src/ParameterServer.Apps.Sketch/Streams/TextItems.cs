using System.Buffers;
using System.IO.Compression;
using ICSharpCode.SharpZipLib.BZip2;

namespace ParameterServer.Apps.Sketch.Streams;

/// <summary>
/// The items of text files: tokens split at ASCII whitespace, as bytes (any bytes: binary garbage is counted as
/// tokens, never refused), read in batches without allocating. <c>.gz</c> and <c>.bz2</c> files are decompressed. A
/// worker reads its share: every W-th file; or, when the job has one plain file, every W-th byte range of it (a token
/// belongs to the range it starts in). A token longer than the 1 MiB buffer is counted as 1 MiB pieces.
/// </summary>
public sealed class TextItems : IDisposable
{
    private const int BufferBytes = 1 << 20;
    private static readonly SearchValues<byte> s_whitespace = SearchValues.Create(" \t\n\r\f\v"u8);

    private readonly Queue<(string Path, long Start, long End)> _parts;
    private readonly byte[] _buffer = new byte[BufferBytes];
    private readonly int[] _starts;
    private readonly int[] _lengths;
    private Stream? _stream;
    private string _path = "";
    private long _end;          // stop at tokens that start at or past this offset of the file (plain files only)
    private long _bufferOffset; // file offset of _buffer[0]
    private int _position;
    private int _filled;
    private bool _eof;

    private TextItems(Queue<(string, long, long)> parts, int batch)
    {
        _parts = parts;
        _starts = new int[batch];
        _lengths = new int[batch];
    }

    /// <summary>This worker's share of <paramref name="files"/>; throws <see cref="FileNotFoundException"/> naming a missing file.</summary>
    public static TextItems Open(IReadOnlyList<string> files, int rank, int workers, int batch)
    {
        ArgumentNullException.ThrowIfNull(files);
        var parts = new Queue<(string, long, long)>();
        foreach (string file in files)
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"sketch: input file '{file}' does not exist or cannot be read", file);
            }
        }
        if (files.Count == 1 && !IsCompressed(files[0]) && workers > 1)
        {
            long length = new FileInfo(files[0]).Length;
            long start = length * rank / workers, end = length * (rank + 1) / workers;
            parts.Enqueue((files[0], start, end));
        }
        else
        {
            for (int i = rank; i < files.Count; i += workers)
            {
                long length = new FileInfo(files[i]).Length;
                parts.Enqueue((files[i], 0, IsCompressed(files[i]) ? long.MaxValue : length));
            }
        }
        return new TextItems(parts, batch);
    }

    private static bool IsCompressed(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".bz2", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Reads up to <paramref name="hashes"/>.Length tokens and their hashes; returns how many (0: the share is done).
    /// <see cref="Token"/> gives a token's bytes until the next call.
    /// </summary>
    public int Read(Span<ulong> hashes)
    {
        int max = Math.Min(hashes.Length, _starts.Length), count = 0;
        while (count < max)
        {
            if (_stream is null && !NextPart())
            {
                return count;
            }
            int skip = _buffer.AsSpan(_position, _filled - _position).IndexOfAnyExcept(s_whitespace);
            if (skip < 0)
            {
                _position = _filled;
                if (!Refill(count))
                {
                    if (count > 0)
                    {
                        return count; // the buffer moves on the next call; this batch's tokens stay valid until then
                    }
                    if (_eof)
                    {
                        ClosePart();
                    }
                }
                continue;
            }
            _position += skip;
            if (_bufferOffset + _position >= _end)
            {
                ClosePart(); // the next range owns tokens from here
                continue;
            }
            int length = _buffer.AsSpan(_position, _filled - _position).IndexOfAny(s_whitespace);
            if (length < 0)
            {
                // The token may go on past the buffer: read more first, unless the file ended or the token fills it.
                bool full = _position == 0 && _filled == _buffer.Length;
                if (!_eof && !full)
                {
                    if (count > 0)
                    {
                        return count;
                    }
                    Refill(0);
                    continue;
                }
                length = _filled - _position;
            }
            _starts[count] = _position;
            _lengths[count] = length;
            hashes[count] = Items.Hash(_buffer.AsSpan(_position, length));
            count++;
            _position += length;
        }
        return count;
    }

    /// <summary>The bytes of token <paramref name="i"/> of the last <see cref="Read"/>.</summary>
    public ReadOnlySpan<byte> Token(int i) => _buffer.AsSpan(_starts[i], _lengths[i]);

    // Moves the unread bytes to the front and reads more. Returns false when nothing could be read (end of file), or
    // when tokens of the current batch (pending > 0) would move.
    private bool Refill(int pending)
    {
        if (pending > 0 || _eof)
        {
            return false;
        }
        int keep = _filled - _position;
        _buffer.AsSpan(_position, keep).CopyTo(_buffer);
        _bufferOffset += _position;
        _position = 0;
        _filled = keep;
        int read;
        try
        {
            read = _stream!.ReadAtLeast(_buffer.AsSpan(_filled), 1, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ICSharpCode.SharpZipLib.SharpZipBaseException)
        {
            throw new InvalidDataException($"sketch: cannot read '{_path}' near byte {_bufferOffset + _filled:N0}: {e.Message}", e);
        }
        _filled += read;
        _eof = read == 0;
        return read > 0;
    }

    private bool NextPart()
    {
        if (!_parts.TryDequeue(out var part))
        {
            return false;
        }
        _path = part.Path;
        _end = part.End;
        var file = new FileStream(part.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long start = part.Start;
        if (start > 0)
        {
            // Begin one byte early: a token that starts before our range (no whitespace before `start`) is not ours.
            file.Position = start - 1;
            start -= 1;
        }
        _stream = part.Path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress)
            : part.Path.EndsWith(".bz2", StringComparison.OrdinalIgnoreCase) ? new BZip2InputStream(file)
            : file;
        _bufferOffset = start;
        _position = _filled = 0;
        _eof = false;
        Refill(0);
        if (part.Start > 0 && _filled > 0 && !s_whitespace.Contains(_buffer[0]))
        {
            // Skip the rest of the token the previous range owns.
            int end = _buffer.AsSpan(0, _filled).IndexOfAny(s_whitespace);
            _position = end < 0 ? _filled : end;
        }
        else if (part.Start > 0)
        {
            _position = Math.Min(1, _filled);
        }
        return true;
    }

    private void ClosePart()
    {
        _stream?.Dispose();
        _stream = null;
    }

    public void Dispose() => ClosePart();
}
