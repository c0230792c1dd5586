"""The contract's error reasons (``capvend.v1.ErrorReason``) and what a client does with each."""

from __future__ import annotations

import grpc

from .v1.errors_pb2 import ErrorReason

#: ``google.rpc.ErrorInfo.domain`` of every capvend refusal.
ERROR_DOMAIN = "capvend.dev"
#: The reason of an error the server did not explain (transport failure, proxy, old server).
REASON_UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"

#: A ``capvend.v1.ErrorReason`` value.
ErrorReasonValue = int

#: Reasons marked retryable in the contract: the same call can succeed later or elsewhere.
RETRYABLE_REASONS = frozenset(
    {
        "RESUME_AHEAD",
        "DRAINING",
        "AUDIT_UNAVAILABLE",
        "REVOCATION_UNAVAILABLE",
        "SESSION_STORE_UNAVAILABLE",
        "SLOW_READER",
    }
)

#: Reasons after which a credential manager stops for good: reconnecting cannot help.
FATAL_REASONS = frozenset(
    {
        "MISSING_CREDENTIAL",
        "UNKNOWN_CREDENTIAL",
        "SESSION_ENDED",
        "SESSION_NOT_FOUND",
        "WRONG_CALLER",
        "INVALID_ARGUMENT",
        "RESOURCE_NOT_GRANTED",
        "SCOPE_NOT_GRANTED",
        "SCOPE_DENIED",
        "ACTION_DENIED",
        "MESSAGE_TOO_LARGE",
    }
)

#: gRPC codes worth retrying when the server gave no reason (a transport failure).
_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


def reason_value(name: str) -> ErrorReasonValue:
    """The enum value of a reason name; ``ERROR_REASON_UNSPECIFIED`` (0) for a name this client does not know."""
    try:
        return int(ErrorReason.Value(name))
    except ValueError:
        return 0


def reason_name(value: int) -> str:
    """The name of an enum value; ``ERROR_REASON_UNSPECIFIED`` for an unknown one."""
    try:
        return str(ErrorReason.Name(value))
    except ValueError:
        return REASON_UNSPECIFIED


def is_retryable(reason: str, code: grpc.StatusCode | None) -> bool:
    """True when a call refused for ``reason`` (with ``code``) can succeed if tried again."""
    if reason != REASON_UNSPECIFIED:
        return reason in RETRYABLE_REASONS
    return code in _RETRYABLE_CODES


def is_fatal(reason: str) -> bool:
    """True when a credential manager must stop after ``reason``."""
    return reason in FATAL_REASONS
