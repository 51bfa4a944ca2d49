using ParameterServer.Core.Cluster;
using ParameterServer.Core.Codecs;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Server.Sessions;

/// <summary>
/// The sessions of this server's inbound connections: each gets its own key cache (bounded by
/// ServerOptions.KeyCacheBytes) when its peer first speaks; a closed one's cache is let go and its counts kept.
/// </summary>
internal sealed class SessionRegistry(LocalServer self)
{
    private readonly List<ReceiverKeyCache> _keyCaches = new();
    private (long Hits, long Misses, long Evictions) _retired;

    /// <summary>The connection's session, made on its first frame (named by the sender's node id, as the view knows it).</summary>
    public Session Of(Connection connection, in FrameHeader header, ClusterView? view) =>
        connection.Tag as Session ?? Open(connection, header.SenderId, view);

    // Apart from Of: the lambda's closure would otherwise be allocated on every frame.
    private Session Open(Connection connection, int sender, ClusterView? view)
    {
        var session = new Session(sender, new ReceiverKeyCache(self.Options.KeyCacheBytes));
        connection.Tag = session;
        var peer = view?.Nodes.FirstOrDefault(n => n.Id == sender);
        connection.Peer = peer is not null ? $"{peer.Role.ToString().ToLowerInvariant()} {peer.Id}" : $"node {sender}";
        lock (_keyCaches)
        {
            _keyCaches.Add(session.Keys);
        }
        return session;
    }

    /// <summary>A closed connection's key cache: its counts are kept, the cache is let go.</summary>
    public void Close(Connection connection)
    {
        if (connection.Tag is not Session session)
        {
            return;
        }
        var cache = session.Keys;
        lock (_keyCaches)
        {
            if (_keyCaches.Remove(cache))
            {
                _retired = (_retired.Hits + cache.Hits, _retired.Misses + cache.Misses, _retired.Evictions + cache.Evictions);
            }
        }
    }

    public Dictionary<string, long> KeyCacheJson()
    {
        lock (_keyCaches)
        {
            return new Dictionary<string, long>
            {
                ["hits"] = _retired.Hits + _keyCaches.Sum(c => c.Hits),
                ["misses"] = _retired.Misses + _keyCaches.Sum(c => c.Misses),
                ["evictions"] = _retired.Evictions + _keyCaches.Sum(c => c.Evictions),
                ["bytes"] = _keyCaches.Sum(c => c.Bytes),
            };
        }
    }
}
