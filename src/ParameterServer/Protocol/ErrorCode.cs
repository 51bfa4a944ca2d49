namespace ParameterServer.Protocol;

/// <summary>Why a request failed; carried in the header of a <see cref="MessageType.Response"/>. Values are wire format.</summary>
internal enum ErrorCode : ushort
{
    None = 0,
    UnknownTable = 1,
    WrongWidth = 2,
    WrongElementType = 3,
    KeysNotSorted = 4,
    KeyOutOfRange = 5,
    MalformedPayload = 6,
    /// <summary>The receiver does not own a key under its view; the sender should refresh its view and re-route.</summary>
    WrongOwner = 7,
    NotReady = 8,
    InvalidArgument = 9,
    UnsupportedMessage = 10,
    Conflict = 11,
    Internal = 12,
    /// <summary>The request named its keys by a signature the receiver does not hold (never sent, or evicted): send the keys.</summary>
    KeyCacheMiss = 13,
    /// <summary>The sender's proven role may not send this message (a worker's replicate, an observer's push).</summary>
    Forbidden = 14,
}
