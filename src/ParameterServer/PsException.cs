using ParameterServer.Protocol;

namespace ParameterServer;

/// <summary>Why a parameter server operation failed. Codes below 100 come from the servers' wire responses.</summary>
public enum PsErrorCode
{
    None = 0,
    UnknownTable = ErrorCode.UnknownTable,
    WrongWidth = ErrorCode.WrongWidth,
    WrongElementType = ErrorCode.WrongElementType,
    KeysNotSorted = ErrorCode.KeysNotSorted,
    KeyOutOfRange = ErrorCode.KeyOutOfRange,
    MalformedPayload = ErrorCode.MalformedPayload,
    WrongOwner = ErrorCode.WrongOwner,
    NotReady = ErrorCode.NotReady,
    InvalidArgument = ErrorCode.InvalidArgument,
    UnsupportedMessage = ErrorCode.UnsupportedMessage,
    Conflict = ErrorCode.Conflict,
    Internal = ErrorCode.Internal,
    KeyCacheMiss = ErrorCode.KeyCacheMiss,
    /// <summary>The role this node proved with the job's secret may not send that message.</summary>
    Forbidden = ErrorCode.Forbidden,

    /// <summary>A peer did not answer in time; the message says what was waited for.</summary>
    Timeout = 100,
    /// <summary>A peer could not be reached at all.</summary>
    Unreachable = 101,
    /// <summary>A connection broke while a request was outstanding.</summary>
    ConnectionLost = 102,
    /// <summary>The job is shutting down.</summary>
    ShuttingDown = 103,
    /// <summary>An operation this one depended on failed.</summary>
    DependencyFailed = 104,
    /// <summary>This node or tool and its peer do not share the job's secret (--secret-file).</summary>
    Unauthenticated = 105,
}

/// <summary>A failed parameter server operation; <see cref="Exception.Message"/> names the node and the cause.</summary>
public sealed class PsException : Exception
{
    public PsException(PsErrorCode code, string message, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
    }

    public PsErrorCode Code { get; }
}
