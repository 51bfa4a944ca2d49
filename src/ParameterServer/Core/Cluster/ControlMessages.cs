using ParameterServer.Protocol;

namespace ParameterServer.Core.Cluster;

/// <summary>Payload codecs of the control plane (node &lt;-&gt; scheduler). Control frames are rare: these may allocate.</summary>
internal static class ControlMessages
{
    public static void WriteRegister(PayloadWriter w, NodeRole role, string host, int port, IReadOnlyCollection<string> handlerNames, bool join = false, long maxMemoryBytes = 0, string jobId = "")
    {
        w.WriteByte((byte)role);
        w.WriteString(host);
        w.WriteInt32(port);
        w.WriteInt32(handlerNames.Count);
        foreach (var name in handlerNames)
        {
            w.WriteString(name);
        }
        w.WriteBool(join);
        w.WriteInt64(maxMemoryBytes);
        w.WriteString(jobId);
    }

    public static (NodeRole Role, string Host, int Port, string[] Handlers, bool Join, long MaxMemoryBytes, string JobId) ReadRegister(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        var role = (NodeRole)r.ReadByte();
        string host = r.ReadString(1024);
        int port = r.ReadInt32();
        var handlers = new string[r.ReadCount(4096)];
        for (int i = 0; i < handlers.Length; i++)
        {
            handlers[i] = r.ReadString(256);
        }
        bool join = r.Remaining > 0 && r.ReadBool();
        long maxMemoryBytes = r.Remaining >= 8 ? r.ReadInt64() : 0;
        string jobId = r.Remaining > 0 ? r.ReadString(256) : "";
        return (role, host, port, handlers, join, maxMemoryBytes, jobId);
    }

    public static void WriteTableSpec(PayloadWriter w, TableSpec spec) => TableInfo.From(0, spec).WriteDefinition(w);

    /// <summary>A declared table's definition; one that no <see cref="TableSpec"/> can hold is a malformed payload.</summary>
    public static TableSpec ReadTableSpec(ReadOnlySpan<byte> payload)
    {
        var r = new PayloadReader(payload);
        var info = TableInfo.ReadDefinition(ref r, 0);
        try
        {
            return info.ToSpec();
        }
        catch (ArgumentException ex)
        {
            throw new ProtocolException($"table definition: {ex.Message}");
        }
    }

    public static byte[] Ints(params int[] values)
    {
        var w = new PayloadWriter();
        foreach (int v in values)
        {
            w.WriteInt32(v);
        }
        return w.WrittenSpan.ToArray();
    }

    public static int[] ReadInts(ReadOnlySpan<byte> payload, int count)
    {
        var r = new PayloadReader(payload);
        var values = new int[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = r.ReadInt32();
        }
        return values;
    }
}
