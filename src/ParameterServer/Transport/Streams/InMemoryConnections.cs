using System.Collections.Concurrent;
using System.Diagnostics;

namespace ParameterServer.Transport.Streams;

/// <summary>
/// Connections inside one process, without sockets: each connection is two bounded byte pipes. Listeners get ports
/// from this instance's own numbering (any host name reaches them). For in-process test clusters, where it takes the
/// network stack and port allocation out of the picture, and for fault injection (<see cref="Cut"/>) that a real socket
/// cannot do deterministically.
/// </summary>
internal sealed class InMemoryConnections(int pipeBytes = 1 << 20) : IConnectionFactory
{
    private readonly ConcurrentDictionary<int, Acceptor> _listeners = new();
    private int _nextPort = 40000;

    public IConnectionStream Connect(string host, int port, TimeSpan timeout, string peer, CancellationToken cancellation = default)
    {
        if (!_listeners.TryGetValue(port, out var listener))
        {
            throw new TransportException($"cannot connect to {peer} at {host}:{port}: connection refused (nothing listens there)");
        }
        var toServer = new Pipe(pipeBytes);
        var toClient = new Pipe(pipeBytes);
        var client = new PipeStream(toClient, toServer, $"{host}:{port}");
        var server = new PipeStream(toServer, toClient, $"in-memory client of {port}");
        if (!listener.Offer(server))
        {
            throw new TransportException($"cannot connect to {peer} at {host}:{port}: connection refused (the listener closed)");
        }
        return client;
    }

    public IAcceptor Listen(string host, int port)
    {
        port = port == 0 ? Interlocked.Increment(ref _nextPort) : port;
        var acceptor = new Acceptor(this, port);
        if (!_listeners.TryAdd(port, acceptor))
        {
            throw new TransportException($"cannot listen on {host}:{port}: the port is in use (in-memory)");
        }
        return acceptor;
    }

    /// <summary>Breaks every open connection to the listener on <paramref name="port"/> (as a crashed peer would).</summary>
    public void Cut(int port)
    {
        if (_listeners.TryGetValue(port, out var listener))
        {
            listener.CutAll();
        }
    }

    private sealed class Acceptor(InMemoryConnections owner, int port) : IAcceptor
    {
        private readonly BlockingCollection<PipeStream> _incoming = new();
        private readonly ConcurrentBag<PipeStream> _offered = new();

        public int Port { get; } = port;

        public bool Offer(PipeStream stream)
        {
            try
            {
                _incoming.Add(stream);
                _offered.Add(stream);
                return true;
            }
            catch (InvalidOperationException)
            {
                return false; // completed: disposed
            }
        }

        public IConnectionStream Accept()
        {
            try
            {
                return _incoming.Take();
            }
            catch (InvalidOperationException)
            {
                throw new ObjectDisposedException(nameof(InMemoryConnections), "the in-memory listener is closed");
            }
        }

        public void CutAll()
        {
            foreach (var stream in _offered)
            {
                stream.Shutdown();
            }
        }

        public void Dispose()
        {
            owner._listeners.TryRemove(Port, out _);
            _incoming.CompleteAdding();
        }
    }

    /// <summary>One direction: a bounded ring buffer; readers wait for bytes, writers for room.</summary>
    private sealed class Pipe(int capacity)
    {
        private readonly byte[] _ring = new byte[capacity];
        private int _start;
        private int _count;
        private bool _closed;

        public int Read(Span<byte> buffer)
        {
            lock (_ring)
            {
                while (_count == 0 && !_closed)
                {
                    Monitor.Wait(_ring);
                }
                if (_count == 0)
                {
                    return 0;
                }
                int n = Math.Min(buffer.Length, _count);
                int first = Math.Min(n, _ring.Length - _start);
                _ring.AsSpan(_start, first).CopyTo(buffer);
                _ring.AsSpan(0, n - first).CopyTo(buffer[first..]);
                _start = (_start + n) % _ring.Length;
                _count -= n;
                Monitor.PulseAll(_ring);
                return n;
            }
        }

        /// <summary>Writes as much as fits, waiting for room until <paramref name="deadline"/> (long.MaxValue: no limit, 0: no wait).</summary>
        public int Write(ReadOnlySpan<byte> data, long deadline)
        {
            int written = 0;
            lock (_ring)
            {
                while (written < data.Length)
                {
                    if (_closed)
                    {
                        throw new IOException("the in-memory connection is closed");
                    }
                    int room = _ring.Length - _count;
                    if (room == 0)
                    {
                        long wait = deadline == long.MaxValue ? -1 : (long)Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline).TotalMilliseconds;
                        if (deadline != long.MaxValue && wait <= 0)
                        {
                            break;
                        }
                        Monitor.Wait(_ring, wait < 0 ? Timeout.Infinite : (int)Math.Min(wait, int.MaxValue));
                        continue;
                    }
                    int n = Math.Min(room, data.Length - written);
                    int end = (_start + _count) % _ring.Length;
                    int first = Math.Min(n, _ring.Length - end);
                    data.Slice(written, first).CopyTo(_ring.AsSpan(end));
                    data.Slice(written + first, n - first).CopyTo(_ring);
                    _count += n;
                    written += n;
                    Monitor.PulseAll(_ring);
                }
            }
            return written;
        }

        public void Close()
        {
            lock (_ring)
            {
                _closed = true;
                Monitor.PulseAll(_ring);
            }
        }
    }

    private sealed class PipeStream(Pipe input, Pipe output, string remote) : IConnectionStream
    {
        public string? RemoteAddress => remote;

        public bool SupportsPartialWrites => true;

        public bool BytesWaiting => true;

        public int Read(Span<byte> buffer) => input.Read(buffer);

        public TimeSpan WriteStallTimeout { get; set; } = Timeout.InfiniteTimeSpan;

        public void Write(ReadOnlySpan<byte> data)
        {
            // The deadline restarts whenever the reader takes bytes: it bounds a stall, not a long transfer.
            while (!data.IsEmpty)
            {
                long deadline = WriteStallTimeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Stopwatch.GetTimestamp() + (long)(WriteStallTimeout.TotalSeconds * Stopwatch.Frequency);
                int written = output.Write(data, deadline);
                if (written == 0)
                {
                    throw new TimeoutException($"the peer took no bytes for {WriteStallTimeout.TotalSeconds:0.#} s");
                }
                data = data[written..];
            }
        }

        public void WriteAll(ReadOnlySpan<byte> data, bool more) => Write(data);

        public int TryWriteNow(ReadOnlySpan<byte> data) => output.Write(data, 0);

        public int WriteUntil(ReadOnlySpan<byte> data, long deadline) => output.Write(data, deadline);

        public void Shutdown()
        {
            input.Close();
            output.Close();
        }

        public void Dispose() => Shutdown();
    }
}
