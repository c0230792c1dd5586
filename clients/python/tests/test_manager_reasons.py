"""How the manager acts on each kind of refusal, against a scripted in-process server."""

from __future__ import annotations

import grpc
import pytest

from capvend import Backoff, Connected, CredentialManager, Disconnected, Failed, TokenRenewed
from event_log import EventLog
from fake_vending import FakeServer, Refuse, Serve, token_message

FAST = Backoff(initial=0.01, maximum=0.05)


@pytest.mark.parametrize(
    "code,reason",
    [
        (grpc.StatusCode.UNAVAILABLE, "RESUME_AHEAD"),
        (grpc.StatusCode.UNAVAILABLE, "DRAINING"),
        (grpc.StatusCode.UNAVAILABLE, "SESSION_STORE_UNAVAILABLE"),
        (grpc.StatusCode.INTERNAL, "INTERNAL"),
    ],
)
def test_a_passing_refusal_makes_it_move_on_not_stop(code: grpc.StatusCode, reason: str, no_thread_leaks: None) -> None:
    fake = FakeServer([Refuse(code, reason), Serve([token_message(0, "t1", "crm", resume="r1")])])
    log = EventLog()
    try:
        with CredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=Backoff(initial=0.01, maximum=0.05)) as m:
            assert m.get_token("crm") == "jwt-t1"
            dropped = log.wait_for(Disconnected, timeout=0)
            assert dropped is not None and dropped.error is not None and dropped.error.reason_name == reason
            assert log.wait_for(Failed, timeout=0) is None
            assert m.resume_token == "r1"
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "code,reason",
    [
        (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_CREDENTIAL"),
        (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED"),
        (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_DENIED"),
    ],
)
def test_a_fatal_reason_stops_it_and_get_token_raises_it(code: grpc.StatusCode, reason: str, no_thread_leaks: None) -> None:
    fake = FakeServer([Refuse(code, reason)])
    log = EventLog()
    try:
        with CredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST) as m:
            failed = log.wait_for(Failed)
            assert failed is not None and failed.error.reason_name == reason
            with pytest.raises(Exception) as e:
                m.get_token("crm", timeout=0.1)
            assert getattr(e.value, "reason_name", None) == reason
            assert m.state == "failed"
            assert fake.service.requests.qsize() == 1  # no second attempt
    finally:
        fake.stop()


def test_an_expired_resume_token_is_dropped_with_the_tokens_and_it_starts_fresh(no_thread_leaks: None) -> None:
    fake = FakeServer([Refuse(grpc.StatusCode.FAILED_PRECONDITION, "RESUME_TOKEN_EXPIRED"), Serve([token_message(0, "t2", "crm", resume="fresh")])])
    log = EventLog()
    try:
        with CredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST, resume_token="too-old") as m:
            assert m.get_token("crm") == "jwt-t2"
            first, second = fake.service.requests.get(timeout=5), fake.service.requests.get(timeout=5)
            assert (first.resume_token, second.resume_token) == ("too-old", "")
            assert m.resume_token == "fresh"
    finally:
        fake.stop()


def test_failover_goes_round_the_endpoints(no_thread_leaks: None) -> None:
    a = FakeServer([Refuse(grpc.StatusCode.UNAVAILABLE, "DRAINING")])
    b = FakeServer([Serve([token_message(0, "tb", "crm")])])
    log = EventLog()
    try:
        with CredentialManager([a.endpoint, b.endpoint], "cred", [("crm", ["read"])], on_event=log, backoff=FAST) as m:
            assert m.get_token("crm") == "jwt-tb"
            connected = log.wait_for(Connected)
            assert connected is not None and connected.endpoint.endswith(b.endpoint)
    finally:
        a.stop()
        b.stop()


def test_the_watchdog_replaces_a_silent_stream_and_resumes(no_thread_leaks: None) -> None:
    # The first stream sends a token and then nothing, not even heartbeats.
    fake = FakeServer([Serve([token_message(0, "t1", "crm", resume="r1")]), Serve([token_message(0, "t2", "crm", resume="r2")])])
    log = EventLog()
    try:
        with CredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST, heartbeat_timeout=0.5) as m:
            dropped = log.wait_for(Disconnected, timeout=15)
            assert dropped is not None and dropped.error is not None and "presumed dead" in dropped.error.message
            assert log.wait_for(TokenRenewed, lambda e: e.token_id == "t2", timeout=15) is not None
            fake.service.requests.get(timeout=5)
            assert fake.service.requests.get(timeout=5).resume_token == "r1"
    finally:
        fake.stop()
