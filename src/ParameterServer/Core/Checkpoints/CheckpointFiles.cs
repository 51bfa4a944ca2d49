using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ParameterServer.Core.Cluster;

namespace ParameterServer.Core.Checkpoints;

/// <summary>One server's share of a checkpoint, as the manifest lists it.</summary>
internal sealed record CheckpointFileEntry(string Name, long Bytes, string Sha256, long Rows);

/// <summary>What a complete checkpoint holds: written by the scheduler once every server has written its file.</summary>
internal sealed record CheckpointManifest(int Format, long Epoch, uint View, string WrittenUtc, TableInfo[] Tables, CheckpointFileEntry[] Files);

/// <summary>
/// The on-disk checkpoint format. A checkpoint is a folder <c>epoch-NNNNNN</c> under the checkpoint directory:
/// one file per server with the rows it was primary for, and a MANIFEST written last, so a folder without a valid
/// manifest is an unfinished checkpoint. Every file ends with the SHA-256 of what precedes it and is written to a
/// temporary name, flushed to disk and renamed, so a crash never leaves a half-written file under the real name.
/// </summary>
internal static class CheckpointFiles
{
    public const string ManifestName = "MANIFEST";
    private const int FormatVersion = 1;
    private static readonly byte[] Magic = "PSCKPT1\n"u8.ToArray();

    public static string EpochFolder(string root, long epoch) => Path.Combine(root, "epoch-" + epoch.ToString("D6", CultureInfo.InvariantCulture));

    public static string ServerFileName(int serverId) => $"server-{serverId}.psck";

    /// <summary>Writes a file as temp + fsync + rename; returns its length and SHA-256 (hex), which the file also ends with.</summary>
    public static (long Bytes, string Sha256) WriteAtomically(string path, Action<Stream> writeBody)
    {
        string temp = path + ".tmp";
        byte[] digest;
        long length;
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        {
            using (var hashing = new HashingStream(file))
            {
                writeBody(hashing);
                digest = hashing.Finish();
            }
            file.Write(digest);
            file.Flush(flushToDisk: true);
            length = file.Length;
        }
        File.Move(temp, path, overwrite: true);
        return (length, Convert.ToHexStringLower(digest));
    }

    /// <summary>Reads a whole file and checks its trailing SHA-256; returns the body. Throws a clear error naming the file.</summary>
    public static byte[] ReadVerified(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Corrupt(path, $"cannot be read: {ex.Message}");
        }
        if (bytes.Length < 32)
        {
            throw Corrupt(path, $"is truncated ({bytes.Length} bytes, shorter than its checksum)");
        }
        var body = bytes.AsSpan(0, bytes.Length - 32);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
        {
            throw Corrupt(path, "fails its SHA-256 check (the file is corrupted or truncated)");
        }
        return body.ToArray();
    }

    public static PsException Corrupt(string path, string what) =>
        new(PsErrorCode.InvalidArgument, $"checkpoint file {path} {what}; restore from an older epoch folder (pass it to --restore) or start without --restore");

    /// <summary>One table's rows in a server's checkpoint: per block, sorted keys and whole stored rows.</summary>
    public sealed record TableRows(int TableId, int Width, int RowStride, List<(ulong[] Keys, float[] Rows)> Blocks);

    /// <summary>Writes one server's rows (already copied: writing happens off the update path).</summary>
    public static (long Bytes, string Sha256, long Rows) WriteServerFile(string path, int serverId, long epoch, IReadOnlyList<TableRows> tables)
    {
        long rows = 0;
        var (bytes, sha) = WriteAtomically(path, stream =>
        {
            var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write(epoch);
            w.Write(serverId);
            w.Write(tables.Count);
            foreach (var table in tables)
            {
                w.Write(table.TableId);
                w.Write(table.Width);
                w.Write(table.RowStride);
                foreach (var (keys, values) in table.Blocks)
                {
                    w.Write(keys.Length);
                    w.Write(MemoryMarshal.AsBytes(keys.AsSpan()));
                    w.Write(MemoryMarshal.AsBytes(values.AsSpan()));
                    rows += keys.Length;
                }
                w.Write(0); // end of table
            }
            w.Flush();
        });
        return (bytes, sha, rows);
    }

    /// <summary>Reads a verified server file, calling <paramref name="rows"/> for each run of rows (table id, row stride, keys, stored rows).</summary>
    public static void ReadServerFile(string path, Action<int, int, ReadOnlySpan<ulong>, ReadOnlySpan<float>> rows)
    {
        var body = ReadVerified(path);
        try
        {
            var span = body.AsSpan();
            if (!span.StartsWith(Magic))
            {
                throw Corrupt(path, "is not a ParameterServer.NET checkpoint file");
            }
            int at = Magic.Length;
            int version = ReadInt(span, ref at);
            if (version != FormatVersion)
            {
                throw Corrupt(path, $"has format {version}; this build reads format {FormatVersion}");
            }
            at += 8 + 4; // epoch, server id
            int tables = ReadInt(span, ref at);
            for (int t = 0; t < tables; t++)
            {
                int tableId = ReadInt(span, ref at);
                _ = ReadInt(span, ref at); // width
                int stride = ReadInt(span, ref at);
                for (int count = ReadInt(span, ref at); count != 0; count = ReadInt(span, ref at))
                {
                    var keys = MemoryMarshal.Cast<byte, ulong>(span.Slice(at, count * sizeof(ulong)));
                    at += count * sizeof(ulong);
                    var values = MemoryMarshal.Cast<byte, float>(span.Slice(at, count * stride * sizeof(float)));
                    at += count * stride * sizeof(float);
                    rows(tableId, stride, keys, values);
                }
            }
            if (at != span.Length)
            {
                throw Corrupt(path, $"has {span.Length - at} bytes after its last table");
            }
        }
        catch (ArgumentOutOfRangeException)
        {
            throw Corrupt(path, "ends in the middle of a table");
        }
    }

    private static int ReadInt(ReadOnlySpan<byte> span, ref int at)
    {
        int value = BinaryPrimitives.ReadInt32LittleEndian(span[at..]);
        at += sizeof(int);
        return value;
    }

    public static void WriteManifest(string folder, CheckpointManifest manifest) =>
        WriteAtomically(Path.Combine(folder, ManifestName), stream => JsonSerializer.Serialize(stream, manifest, JsonOptions));

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>
    /// The checkpoint to restore: <paramref name="path"/> is an epoch folder, or a checkpoint directory (its newest
    /// epoch with a manifest). Every file is verified before anything is used. Throws a clear error naming the file.
    /// </summary>
    public static (string Folder, CheckpointManifest Manifest) Open(string path)
    {
        string folder = path;
        if (!File.Exists(Path.Combine(path, ManifestName)))
        {
            if (!Directory.Exists(path))
            {
                throw new PsException(PsErrorCode.InvalidArgument, $"checkpoint directory {path} does not exist");
            }
            folder = Directory.GetDirectories(path, "epoch-*").Where(d => File.Exists(Path.Combine(d, ManifestName))).Order(StringComparer.Ordinal).LastOrDefault()
                ?? throw new PsException(PsErrorCode.InvalidArgument, $"{path} holds no complete checkpoint (no epoch-*/{ManifestName}); was the job run with --checkpoint-dir {path}?");
        }
        string manifestPath = Path.Combine(folder, ManifestName);
        CheckpointManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CheckpointManifest>(ReadVerified(manifestPath), JsonOptions);
        }
        catch (JsonException ex)
        {
            throw Corrupt(manifestPath, $"is not a valid manifest: {ex.Message}");
        }
        if (manifest is null || manifest.Format != FormatVersion)
        {
            throw Corrupt(manifestPath, $"has an unknown format {manifest?.Format}");
        }
        foreach (var file in manifest.Files)
        {
            string filePath = Path.Combine(folder, file.Name);
            var body = ReadVerified(filePath);
            if (body.Length + 32 != file.Bytes || Convert.ToHexStringLower(SHA256.HashData(body)) != file.Sha256)
            {
                throw Corrupt(filePath, "differs from what the manifest recorded for it");
            }
        }
        return (folder, manifest);
    }

    /// <summary>Deletes epoch folders older than <paramref name="keepFrom"/>.</summary>
    public static void DeleteOlder(string root, long keepFrom)
    {
        foreach (var dir in Directory.GetDirectories(root, "epoch-*"))
        {
            if (long.TryParse(Path.GetFileName(dir)["epoch-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out long epoch) && epoch < keepFrom)
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    /// <summary>Passes writes through while hashing them.</summary>
    private sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public byte[] Finish() => _hash.GetHashAndReset();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
        }

        public override void Flush() => inner.Flush();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _hash.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
