using ParameterServer.Core.Cluster;

namespace ParameterServer.Client.Dispatch;

// Room: Dispatch. Owns, per table id, whether servers answer its requests on arrival (async tables).

/// <summary>
/// True when the servers answer requests on a table as soon as they arrive (async tables). Answers to sync pushes wait
/// for the other workers, so they are not counted as awaited answers (Connection.ExpectAnswer): a frame queued behind
/// them would wait for the slowest worker. Every answer echoes its request's table id.
/// </summary>
internal sealed class PromptTables
{
    private volatile bool[] _prompt = [];

    public bool AnswersPromptly(int tableId)
    {
        var prompt = _prompt;
        return (uint)tableId < (uint)prompt.Length && prompt[tableId];
    }

    /// <summary>Notes a declared table. Callers serialise (the host's table lock).</summary>
    public void Add(TableInfo info)
    {
        var prompt = _prompt;
        if (info.Id >= prompt.Length)
        {
            Array.Resize(ref prompt, info.Id + 1); // a new array: readers see the old one or the new one, both consistent
        }
        prompt[info.Id] = info.Mode == UpdateMode.Async;
        _prompt = prompt;
    }
}
