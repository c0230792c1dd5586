"""One error type for everything capvend refuses, with the contract's machine-readable reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from .reasons import (
    ERROR_DOMAIN,
    REASON_UNSPECIFIED,
    ErrorReasonValue,
    is_retryable,
    reason_name,
    reason_value,
)
from .scrub import scrub_text
from .status_details import STATUS_DETAILS_KEY, MalformedStatus, decode_status, error_info_of


class CapvendError(Exception):
    """A refusal from capvend, or a local condition of a credential manager.

    Attributes:
        reason: the ``capvend.v1.ErrorReason`` value (an int; compare with
            ``ErrorReason.SESSION_ENDED`` or read ``reason_name``). ``ERROR_REASON_UNSPECIFIED``
            when the server sent no capvend ErrorInfo (a transport failure, a proxy).
        reason_name: the reason as the server spelled it, e.g. ``"SESSION_ENDED"``; kept even
            when this client's enum does not know it yet.
        code: the gRPC status code, or None for a local condition without one.
        retryable: True when trying again later (or elsewhere) can succeed.
        metadata: the ErrorInfo metadata (field, resource or scope involved).
    """

    reason: ErrorReasonValue
    reason_name: str
    code: grpc.StatusCode | None
    retryable: bool
    metadata: Mapping[str, str]

    def __init__(
        self,
        message: str,
        *,
        reason: str = REASON_UNSPECIFIED,
        code: grpc.StatusCode | None = None,
        retryable: bool | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        # Messages come from the server or from this package; scrub anyway so a token that
        # found its way into one never reaches a log through str(error).
        message = scrub_text(message)
        super().__init__(message)
        self.message = message
        self.reason_name = reason
        self.reason = reason_value(reason)
        self.code = code
        self.retryable = is_retryable(reason, code) if retryable is None else retryable
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        code = self.code.name if self.code is not None else "LOCAL"
        return f"{code} {self.reason_name}: {self.message}"

    def __repr__(self) -> str:
        return f"CapvendError(reason={self.reason_name!r}, code={self.code!r}, retryable={self.retryable!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.message, self.reason_name, self.code, self.retryable, dict(self.metadata)))


def _rebuild(message: str, reason: str, code: grpc.StatusCode | None, retryable: bool, metadata: dict[str, str]) -> CapvendError:
    return CapvendError(message, reason=reason, code=code, retryable=retryable, metadata=metadata)


_CODES_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def _trailer_bytes(trailers: Any) -> bytes | None:
    if not trailers:
        return None
    for item in trailers:
        key, value = item[0], item[1]
        if key == STATUS_DETAILS_KEY:
            return value if isinstance(value, bytes) else str(value).encode("latin-1")
    return None


def error_from_status(code: grpc.StatusCode | None, details: str | None, trailers: Any) -> CapvendError:
    """Builds a CapvendError from a call's code, message and trailing metadata.

    The reason is read from the ``google.rpc.ErrorInfo`` in ``grpc-status-details-bin`` when its
    domain is capvend's; message text is never parsed.
    """
    reason = REASON_UNSPECIFIED
    metadata: dict[str, str] = {}
    raw = _trailer_bytes(trailers)
    if raw is not None:
        try:
            status = decode_status(raw)
            info = error_info_of(status)
        except MalformedStatus:
            info = None
        if info is not None and info.domain == ERROR_DOMAIN and info.reason:
            reason = info.reason
            metadata = dict(info.metadata)
    message = details or (code.name if code is not None else "unknown error")
    return CapvendError(message, reason=reason, code=code, metadata=metadata)


def error_from_rpc(err: grpc.RpcError) -> CapvendError:
    """Builds a CapvendError from a grpc (sync or asyncio) RpcError."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    trailers_fn = getattr(err, "trailing_metadata", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    try:
        trailers = trailers_fn() if callable(trailers_fn) else None
    except Exception:  # noqa: BLE001 - a call that never started has no trailers
        trailers = None
    if isinstance(code, int) and not isinstance(code, grpc.StatusCode):
        code = _CODES_BY_VALUE.get(code)
    return error_from_status(code if isinstance(code, grpc.StatusCode) else None, details, trailers)


def reason_of(err: BaseException) -> str:
    """The reason name of a CapvendError or grpc RpcError; ``ERROR_REASON_UNSPECIFIED`` otherwise."""
    if isinstance(err, CapvendError):
        return err.reason_name
    if isinstance(err, grpc.RpcError):
        return error_from_rpc(err).reason_name
    return reason_name(0)
