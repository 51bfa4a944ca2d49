namespace ParameterServer.Transport;

/// <summary>A connection could not be opened, was closed, or could not send in time. The message names the peer.</summary>
public sealed class TransportException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The peer answered but the two do not share the job's secret: retrying cannot help.</summary>
    public bool IsAuthentication { get; internal init; }
}
