using Microsoft.Extensions.Logging;
using ParameterServer.Client.Diagnostics;
using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;
using ParameterServer.Transport;

namespace ParameterServer.Client.Routing;

// Room: Routing (the lowest data-plane room: it knows views and connections, not calls).
// Owns: the links to the servers (by id, and every link ever opened, for traffic sums), the routes in force (a view
// and a link per server slot, swapped as one), the lock that pairs a caller's sequence number with the routes it was
// taken under (sync rounds), and the request-id sequence of every frame this worker sends to servers.
// Uses: Transport (connections), Core.Cluster (views). Told of link events through ILinkEvents (the data path).

/// <summary>The routes a worker sends by and the links behind them; switched to a newer view by <see cref="Update"/>.</summary>
internal sealed class RouteTable(int nodeId, WorkerOptions options, ILogger log, TrafficMeter meter, Func<List<RoundMark>> syncRounds)
{
    private readonly object _routeLock = new(); // one switch at a time
    private readonly Lock _switchLock = new(); // the routes and the sequence numbers taken with them (TakeWithRoutes)
    private readonly Dictionary<int, ServerLink> _linksById = new();
    private readonly List<ServerLink> _everyLink = new();
    private volatile Routes _routes = Routes.None;
    private long _nextRequestId;

    /// <summary>Receives the frames and closes of every link; set once by the host before the first <see cref="Update"/>.</summary>
    public ILinkEvents LinkEvents { get; set; } = null!;

    /// <summary>The routes in force; <see cref="Routes.None"/> before the first <see cref="Update"/>.</summary>
    public Routes Current => _routes;

    /// <summary>The routes in force; throws before the worker is connected.</summary>
    public Routes Connected => _routes == Routes.None ? throw new InvalidOperationException("not connected") : _routes;

    /// <summary>A new request id for a frame to a server: (sender, request id) names a request, so resends can be deduplicated.</summary>
    public ulong NextRequestId() => (ulong)Interlocked.Increment(ref _nextRequestId);

    /// <summary>
    /// The routes in force together with the next value of <paramref name="sequence"/> (taken when <paramref name="take"/>,
    /// else <paramref name="value"/> is 0): a switch falls between two values, so a server new to this worker learns
    /// exactly which values (sync rounds) were cut without it (see <see cref="AnnounceRounds"/>).
    /// </summary>
    public Routes TakeWithRoutes(ref long sequence, bool take, out long value)
    {
        lock (_switchLock)
        {
            value = take ? sequence++ : 0;
            return _routes;
        }
    }

    /// <summary>Bytes this worker sent to and received from servers, over every link it opened.</summary>
    public (long Sent, long Received) Traffic
    {
        get
        {
            lock (_everyLink)
            {
                return (_everyLink.Sum(l => l.Connection.BytesSent), _everyLink.Sum(l => l.Connection.BytesReceived));
            }
        }
    }

    /// <summary>Forgets the rows of filtered pull answers held for a table, on every link.</summary>
    public void ForgetPulledRows(int tableId)
    {
        lock (_everyLink)
        {
            foreach (var link in _everyLink)
            {
                link.ForgetPulledRows(tableId);
            }
        }
    }

    /// <summary>Connects to the servers of a newer view (reusing open links), swaps the routing, closes links to servers that left.</summary>
    public void Update(ClusterView view, bool startup)
    {
        List<ServerLink> gone = new();
        List<ServerLink>? joined = null;
        List<RoundMark>? roundsFrom = null;
        lock (_routeLock)
        {
            if (_routes != Routes.None && view.Number <= _routes.View.Number)
            {
                return;
            }
            var bySlot = new ServerLink[view.Servers.Count];
            for (int slot = 0; slot < bySlot.Length; slot++)
            {
                var server = view.Servers[slot];
                if (_linksById.TryGetValue(server.Id, out var open) && !open.Connection.IsClosed)
                {
                    bySlot[slot] = open;
                    continue;
                }
                var link = new ServerLink(LinkEvents, server);
                link.Connection = Connection.Connect(server.Host, server.Port, link, options.Transport, log, server.Describe(), meter);
                _linksById[server.Id] = link;
                lock (_everyLink)
                {
                    _everyLink.Add(link);
                }
                bySlot[slot] = link;
            }
            foreach (var (id, link) in _linksById.Where(e => view.SlotOfServer(e.Key) < 0).ToList())
            {
                _linksById.Remove(id);
                if (!view.Nodes.Any(n => n.Id == id && n.Left))
                {
                    gone.Add(link); // a drained server answers what it has and closes the link when it exits
                }
            }
            var previous = _routes;
            lock (_switchLock)
            {
                _routes = new Routes(view, bySlot);
                if (!startup && previous != Routes.None)
                {
                    joined = bySlot.Where(link => previous.View.SlotOfServer(link.Server.Id) < 0).ToList();
                    roundsFrom = syncRounds();
                }
            }
        }
        if (!startup)
        {
            log.LogRoutesByView(nodeId, view.Number, view.Servers.Count);
        }
        if (joined is { Count: > 0 } && roundsFrom is { Count: > 0 })
        {
            AnnounceRounds(view, joined, roundsFrom);
        }
        foreach (var link in gone)
        {
            link.Connection.Close($"{link.Server.Describe()} left the view");
        }
    }

    /// <summary>
    /// Tells servers new to this worker which of its sync rounds they will never see: those it cut by views without them.
    /// A joined server cannot know otherwise, and would hold a round open for a push that never comes (while the worker
    /// that did send its part waits for the ack, and the other at the next barrier).
    /// </summary>
    private void AnnounceRounds(ClusterView view, List<ServerLink> joined, List<RoundMark> roundsFrom)
    {
        foreach (var link in joined)
        {
            foreach (var mark in roundsFrom)
            {
                var marker = new FrameHeader
                {
                    Type = MessageType.Push,
                    Flags = FrameFlags.RoundsFrom,
                    SenderId = nodeId,
                    ViewNumber = view.Number,
                    TableId = mark.TableId,
                    ElementType = WireElementType.Float32,
                    RowWidth = mark.Width,
                    Round = mark.Round,
                };
                try
                {
                    link.Connection.Send(marker, ReadOnlySpan<byte>.Empty);
                }
                catch (TransportException ex)
                {
                    log.LogRoundsNotAnnounced(nodeId, link.Server.Describe(), mark.TableName, ex.Message);
                }
            }
        }
    }

    /// <summary>Closes every open link (the worker is closing, or could not start).</summary>
    public void CloseAll(string reason)
    {
        List<ServerLink> links;
        lock (_routeLock)
        {
            links = _linksById.Values.ToList();
        }
        foreach (var link in links)
        {
            link.Connection.Close(reason);
        }
    }
}
