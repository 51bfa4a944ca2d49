namespace ParameterServer.Transport;

/// <summary>A connection could not be opened, was closed, or could not send in time. The message names the peer.</summary>
public sealed class TransportException(string message, Exception? inner = null) : Exception(message, inner);
