"""CapvendError: reason, retryable, no token in its text, and it survives pickling."""

from __future__ import annotations

import pickle

import grpc

from capvend import FATAL_REASONS, RETRYABLE_REASONS, CapvendError, ErrorReason

JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_every_reason_this_client_acts_on_is_in_the_contract_enum() -> None:
    for name in RETRYABLE_REASONS | FATAL_REASONS | {"GRANT_REVOKED", "RESUME_TOKEN_EXPIRED"}:
        assert ErrorReason.Value(name) != 0, name


def test_retryable_and_fatal_do_not_overlap() -> None:
    assert not RETRYABLE_REASONS & FATAL_REASONS


def test_str_names_code_and_reason_and_never_shows_a_token() -> None:
    err = CapvendError(f"refused {JWT}", reason="UNKNOWN_CREDENTIAL", code=grpc.StatusCode.UNAUTHENTICATED)
    assert str(err).startswith("UNAUTHENTICATED UNKNOWN_CREDENTIAL: refused ")
    assert JWT not in str(err) and JWT not in repr(err)


def test_pickle_round_trip_keeps_everything() -> None:
    err = CapvendError("lagging", reason="RESUME_AHEAD", code=grpc.StatusCode.UNAVAILABLE, metadata={"field": "resume_token"})
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.reason_name, back.code, back.retryable, dict(back.metadata)) == (
        ErrorReason.RESUME_AHEAD, "RESUME_AHEAD", grpc.StatusCode.UNAVAILABLE, True, {"field": "resume_token"})
