"""Reads the standard gRPC rich error status (``grpc-status-details-bin``) without extra packages.

The trailer holds a serialized ``google.rpc.Status``; its ``details`` are ``google.protobuf.Any``
messages, one of which is a ``google.rpc.ErrorInfo`` carrying the machine-readable reason.
Decoding the three small messages here, straight from the protobuf wire format, keeps the
runtime dependencies to ``grpcio`` and ``protobuf`` (no ``googleapis-common-protos``) and never
registers ``google.rpc`` types in a descriptor pool that the application may also fill.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

#: The trailer that carries the serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: The ``Any.type_url`` of a ``google.rpc.ErrorInfo`` detail.
ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5


class MalformedStatus(ValueError):
    """The status details are not a well-formed ``google.rpc.Status``."""


@dataclass(frozen=True)
class AnyDetail:
    """One ``google.protobuf.Any`` from ``Status.details``: its type URL and serialized value."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class RpcStatus:
    """A decoded ``google.rpc.Status``: gRPC code number, message and details."""

    code: int
    message: str
    details: tuple[AnyDetail, ...] = ()


@dataclass(frozen=True)
class ErrorInfo:
    """A decoded ``google.rpc.ErrorInfo`` (AIP-193): reason, domain and metadata."""

    reason: str
    domain: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedStatus("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise MalformedStatus("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yields (field number, wire type, value) for each field; skips nothing, checks bounds."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedStatus("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            end = pos + length
            if end > len(buf):
                raise MalformedStatus("length-delimited field runs past the end")
            yield number, wire, buf[pos:end]
            pos = end
        elif wire == _I64:
            if pos + 8 > len(buf):
                raise MalformedStatus("truncated fixed64")
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == _I32:
            if pos + 4 > len(buf):
                raise MalformedStatus("truncated fixed32")
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise MalformedStatus(f"unsupported wire type {wire}")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise MalformedStatus("expected a string field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedStatus("string field is not UTF-8") from e


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedStatus("expected a bytes field")
    return value


def decode_status(data: bytes) -> RpcStatus:
    """Decodes a serialized ``google.rpc.Status``. Raises MalformedStatus on bad input."""
    code = 0
    message = ""
    details: list[AnyDetail] = []
    for number, wire, value in _fields(data):
        if number == 1 and wire == _VARINT:
            assert isinstance(value, int)
            # int32 on the wire: negative values are sign-extended to 64 bits.
            code = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 2 and wire == _LEN:
            message = _text(value)
        elif number == 3 and wire == _LEN:
            type_url = ""
            payload = b""
            for n, w, v in _fields(_bytes(value)):
                if n == 1 and w == _LEN:
                    type_url = _text(v)
                elif n == 2 and w == _LEN:
                    payload = _bytes(v)
            details.append(AnyDetail(type_url, payload))
    return RpcStatus(code, message, tuple(details))


def decode_error_info(data: bytes) -> ErrorInfo:
    """Decodes a serialized ``google.rpc.ErrorInfo``. Raises MalformedStatus on bad input."""
    reason = ""
    domain = ""
    metadata: dict[str, str] = {}
    for number, wire, value in _fields(data):
        if number == 1 and wire == _LEN:
            reason = _text(value)
        elif number == 2 and wire == _LEN:
            domain = _text(value)
        elif number == 3 and wire == _LEN:
            key = ""
            val = ""
            for n, w, v in _fields(_bytes(value)):
                if n == 1 and w == _LEN:
                    key = _text(v)
                elif n == 2 and w == _LEN:
                    val = _text(v)
            metadata[key] = val
    return ErrorInfo(reason, domain, metadata)


def error_info_of(status: RpcStatus) -> ErrorInfo | None:
    """The first ErrorInfo among the status details, or None."""
    for d in status.details:
        # Any type URLs may use another host prefix; the type name is what counts.
        if d.type_url == ERROR_INFO_TYPE_URL or d.type_url.endswith("/google.rpc.ErrorInfo"):
            return decode_error_info(d.value)
    return None
