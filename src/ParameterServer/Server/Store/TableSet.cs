using ParameterServer.Core.Cluster;
using ParameterServer.Protocol;

namespace ParameterServer.Server.Store;

/// <summary>
/// The tables this server holds, by id, created as views declare them (with the table's handler and pull filter), and
/// the reasons a table could not be created. Lookups are lock-free; creation happens on view installs, one at a time.
/// </summary>
internal sealed class TableSet(LocalServer self, Func<ClusterView?> currentView)
{
    private readonly Dictionary<int, string> _errors = new();
    private volatile TableStore?[] _tables = [];

    /// <summary>Every slot by table id (null where this server has no such table).</summary>
    public TableStore?[] All => _tables;

    public TableStore? Get(int tableId)
    {
        var tables = _tables;
        return (uint)tableId < (uint)tables.Length ? tables[tableId] : null;
    }

    public bool HasError(int tableId)
    {
        lock (_errors)
        {
            return _errors.ContainsKey(tableId);
        }
    }

    /// <summary>Why a table is missing here: the error that stopped its creation, or the fix for an undeclared one.</summary>
    public string WhyMissing(int tableId)
    {
        lock (_errors)
        {
            return _errors.TryGetValue(tableId, out var error) ? error : "declare it first (PsClient.DeclareTableAsync)";
        }
    }

    /// <summary>Creates the tables <paramref name="view"/> declares that this server lacks. Called by view installs, one at a time.</summary>
    public TableStore?[] CreateDeclared(ClusterView view)
    {
        var tables = _tables;
        int maxId = view.Tables.Count == 0 ? -1 : view.Tables.Max(t => t.Id);
        if (maxId >= tables.Length)
        {
            Array.Resize(ref tables, maxId + 1);
        }
        foreach (var info in view.Tables)
        {
            if (tables[info.Id] is null && !HasError(info.Id))
            {
                try
                {
                    tables[info.Id] = new TableStore(info, Extensions.UpdateHandlers.ForTable(info, self.Options.CreateHandler)) { PullFilter = self.Options.CreatePullFilter(info.PullFilter) };
                    self.Log.LogTableCreated(self.Id, info.Describe());
                }
                catch (ArgumentException ex)
                {
                    lock (_errors)
                    {
                        _errors[info.Id] = ex.Message;
                    }
                    self.Log.LogTableCreateFailed(self.Id, info.Describe(), ex.Message);
                }
            }
        }
        _tables = tables;
        return tables;
    }

    /// <summary>The table a request names, waiting (up to 5 s) for the view it was cut by if this server just joined and lacks the table.</summary>
    public TableStore? ForRequest(in FrameHeader header, out ClusterView view)
    {
        view = currentView()!;
        var table = Get(header.TableId);
        if (table is null && header.ViewNumber > (view?.Number ?? 0))
        {
            long deadline = Environment.TickCount64 + 5000;
            while ((currentView()?.Number ?? 0) < header.ViewNumber && Environment.TickCount64 < deadline && !self.Stopping)
            {
                Thread.Sleep(1);
            }
            view = currentView()!;
            table = Get(header.TableId);
        }
        return table;
    }

    /// <summary>
    /// The table a peer server sends rows of. A server that just joined may get them before the scheduler's view that
    /// declares its tables (another connection): it waits (up to 5 s) for that view rather than drop the rows.
    /// </summary>
    public TableStore? FromPeer(int tableId)
    {
        long deadline = Environment.TickCount64 + 5000;
        while (true)
        {
            var table = Get(tableId);
            if ((table is not null && currentView() is not null) || HasError(tableId) || Environment.TickCount64 > deadline || self.Stopping)
            {
                return table;
            }
            Thread.Sleep(1);
        }
    }
}
