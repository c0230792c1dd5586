from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    INVALID_ARGUMENT: _ClassVar[ErrorReason]
    MISSING_CREDENTIAL: _ClassVar[ErrorReason]
    UNKNOWN_CREDENTIAL: _ClassVar[ErrorReason]
    WRONG_CALLER: _ClassVar[ErrorReason]
    SESSION_NOT_FOUND: _ClassVar[ErrorReason]
    SESSION_ENDED: _ClassVar[ErrorReason]
    RESOURCE_NOT_GRANTED: _ClassVar[ErrorReason]
    SCOPE_NOT_GRANTED: _ClassVar[ErrorReason]
    SCOPE_DENIED: _ClassVar[ErrorReason]
    ACTION_DENIED: _ClassVar[ErrorReason]
    TOKEN_REVOKED: _ClassVar[ErrorReason]
    AUDIT_UNAVAILABLE: _ClassVar[ErrorReason]
    REVOCATION_UNAVAILABLE: _ClassVar[ErrorReason]
    SESSION_STORE_UNAVAILABLE: _ClassVar[ErrorReason]
    SLOW_READER: _ClassVar[ErrorReason]
    DRAINING: _ClassVar[ErrorReason]
    RESUME_AHEAD: _ClassVar[ErrorReason]
    RESUME_TOKEN_EXPIRED: _ClassVar[ErrorReason]
    REQUEST_ID_REUSED: _ClassVar[ErrorReason]
    GRANT_REVOKED: _ClassVar[ErrorReason]
    TTL_EXCEEDS_GRANT: _ClassVar[ErrorReason]
    STREAM_LIMIT: _ClassVar[ErrorReason]
    SESSION_QUOTA: _ClassVar[ErrorReason]
    OVERLOADED: _ClassVar[ErrorReason]
    POLICY_CHANGED: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]
    MESSAGE_TOO_LARGE: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
INVALID_ARGUMENT: ErrorReason
MISSING_CREDENTIAL: ErrorReason
UNKNOWN_CREDENTIAL: ErrorReason
WRONG_CALLER: ErrorReason
SESSION_NOT_FOUND: ErrorReason
SESSION_ENDED: ErrorReason
RESOURCE_NOT_GRANTED: ErrorReason
SCOPE_NOT_GRANTED: ErrorReason
SCOPE_DENIED: ErrorReason
ACTION_DENIED: ErrorReason
TOKEN_REVOKED: ErrorReason
AUDIT_UNAVAILABLE: ErrorReason
REVOCATION_UNAVAILABLE: ErrorReason
SESSION_STORE_UNAVAILABLE: ErrorReason
SLOW_READER: ErrorReason
DRAINING: ErrorReason
RESUME_AHEAD: ErrorReason
RESUME_TOKEN_EXPIRED: ErrorReason
REQUEST_ID_REUSED: ErrorReason
GRANT_REVOKED: ErrorReason
TTL_EXCEEDS_GRANT: ErrorReason
STREAM_LIMIT: ErrorReason
SESSION_QUOTA: ErrorReason
OVERLOADED: ErrorReason
POLICY_CHANGED: ErrorReason
INTERNAL: ErrorReason
MESSAGE_TOO_LARGE: ErrorReason
