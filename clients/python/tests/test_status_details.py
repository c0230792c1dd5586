"""The hand-written google.rpc.Status / ErrorInfo decoder against protobuf's own encodings."""

from __future__ import annotations

import grpc
import pytest

from capvend import CapvendError, ErrorReason
from capvend.errors import error_from_status
from capvend.status_details import STATUS_DETAILS_KEY, MalformedStatus, decode_status, error_info_of
from rpc_status_messages import status_bytes


def test_status_and_error_info_decode_as_protobuf_encoded_them() -> None:
    raw = status_bytes(7, "scope \"delete\" is not granted on \"crm\"", "SCOPE_NOT_GRANTED", metadata={"resource": "crm", "scope": "delete"})
    status = decode_status(raw)
    assert status.code == 7
    assert status.message == 'scope "delete" is not granted on "crm"'
    assert len(status.details) == 2
    info = error_info_of(status)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == ("SCOPE_NOT_GRANTED", "capvend.dev", {"resource": "crm", "scope": "delete"})


def test_negative_codes_and_unicode_survive() -> None:
    status = decode_status(status_bytes(-1, "ünïcode ✓", "", extra_any=False))
    assert (status.code, status.message, status.details) == (-1, "ünïcode ✓", ())


def test_no_error_info_gives_none() -> None:
    assert error_info_of(decode_status(status_bytes(14, "down"))) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",  # truncated varint
        b"\x12\x05ab",  # length past the end
        b"\x0b",  # wire type 3 (groups) is not used by these messages
        b"\x12\x02\xff\xfe",  # message is not UTF-8
        b"\x00\x01",  # field number 0
        b"\x08" + b"\xff" * 11,  # varint too long
    ],
)
def test_malformed_input_raises_malformed_status(raw: bytes) -> None:
    with pytest.raises(MalformedStatus):
        decode_status(raw)


def test_error_from_status_reads_the_reason_and_metadata() -> None:
    raw = status_bytes(16, "session ended", "SESSION_ENDED", metadata={"sessionId": "ses_x"})
    err = error_from_status(grpc.StatusCode.UNAUTHENTICATED, "the session ended", [(STATUS_DETAILS_KEY, raw)])
    assert isinstance(err, CapvendError)
    assert err.reason == ErrorReason.SESSION_ENDED
    assert err.reason_name == "SESSION_ENDED"
    assert err.code is grpc.StatusCode.UNAUTHENTICATED
    assert err.retryable is False
    assert err.metadata == {"sessionId": "ses_x"}


def test_retryable_reasons_are_retryable() -> None:
    raw = status_bytes(14, "lagging", "RESUME_AHEAD")
    err = error_from_status(grpc.StatusCode.UNAVAILABLE, "behind", [(STATUS_DETAILS_KEY, raw)])
    assert (err.reason, err.retryable) == (ErrorReason.RESUME_AHEAD, True)


def test_other_domains_malformed_details_and_absent_details_leave_the_reason_unspecified() -> None:
    foreign = status_bytes(7, "no", "SCOPE_DENIED", domain="example.com")
    for trailers in ([(STATUS_DETAILS_KEY, foreign)], [(STATUS_DETAILS_KEY, b"\x12\x05ab")], [], None):
        err = error_from_status(grpc.StatusCode.PERMISSION_DENIED, "no", trailers)
        assert err.reason == ErrorReason.ERROR_REASON_UNSPECIFIED
        assert err.reason_name == "ERROR_REASON_UNSPECIFIED"
        assert err.retryable is False


def test_a_reason_newer_than_this_client_keeps_its_name() -> None:
    raw = status_bytes(14, "later", "SOMETHING_NEW")
    err = error_from_status(grpc.StatusCode.UNAVAILABLE, "later", [(STATUS_DETAILS_KEY, raw)])
    assert err.reason == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert err.reason_name == "SOMETHING_NEW"
    assert err.retryable is False


def test_without_a_reason_transport_codes_are_retryable() -> None:
    assert error_from_status(grpc.StatusCode.UNAVAILABLE, "connection refused", None).retryable is True
    assert error_from_status(grpc.StatusCode.PERMISSION_DENIED, "no", None).retryable is False
