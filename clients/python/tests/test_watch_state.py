"""The stream protocol without I/O: resume tokens, events, heartbeat learning, the request."""

from __future__ import annotations

import grpc

from capvend import Grant, SessionEnded, TokenRenewed, TokensRevoked
from capvend.token_cache import TokenCache
from capvend.v1 import vending_pb2 as pb
from capvend.watch_state import DEFAULT_HEARTBEAT_TIMEOUT, MIN_HEARTBEAT_TIMEOUT, WatchState
from fake_vending import token_message


def state(**kwargs: object) -> WatchState:
    cache = TokenCache([Grant("crm", ["read"], ttl=90), Grant("calendar", ["read"])])
    return WatchState(cache, **kwargs)  # type: ignore[arg-type]


def test_the_request_carries_grants_ttl_and_the_resume_token() -> None:
    req = state(resume_token="abc").request()
    assert [(g.resource, list(g.scopes)) for g in req.grants] == [("crm", ["read"]), ("calendar", ["read"])]
    assert req.grants[0].ttl.seconds == 90 and not req.grants[1].HasField("ttl")
    assert req.resume_token == "abc"


def test_tokens_revocations_and_the_end_become_events_and_the_resume_token_advances() -> None:
    w = state()
    assert w.apply(token_message(0, "t1", "crm", resume="r1"), 0.0) == [TokenRenewed("crm", "t1", w.cache.held()["crm"].expires_at, "")]
    assert w.resume_token == "r1"
    revoked = pb.WatchSessionResponse(resume_token="r2")
    revoked.tokens_revoked.token_ids.append("t1")
    revoked.tokens_revoked.grant_indexes.append(0)
    revoked.tokens_revoked.reason = "leak"
    assert w.apply(revoked, 1.0) == [TokensRevoked(("t1",), ("crm",), "leak")]
    # A heartbeat without a resume token keeps the last one.
    hb = pb.WatchSessionResponse()
    hb.heartbeat.time.seconds = 1
    assert w.apply(hb, 2.0) == [] and w.resume_token == "r2"
    ended = pb.WatchSessionResponse(resume_token="r3")
    ended.session_ended.reason = "done"
    assert w.apply(ended, 3.0) == [SessionEnded("done")]
    assert w.apply(ended, 3.0) == []  # only once
    terminal = w.cache.terminal
    assert terminal is not None and terminal.reason_name == "SESSION_ENDED" and terminal.code is grpc.StatusCode.UNAUTHENTICATED


def test_the_watchdog_timeout_is_learned_from_heartbeat_gaps() -> None:
    w = state()
    hb = pb.WatchSessionResponse()
    hb.heartbeat.SetInParent()
    assert w.heartbeat_timeout() == DEFAULT_HEARTBEAT_TIMEOUT
    w.apply(hb, 10.0)
    w.apply(hb, 12.0)
    assert w.heartbeat_timeout() == 6.0
    w.apply(hb, 13.0)  # the shortest gap seen wins
    assert w.heartbeat_timeout() == 3.0
    w.connection_lost()
    w.apply(hb, 100.0)  # the gap across a reconnect is not an interval
    assert w.heartbeat_timeout() == 3.0
    w.apply(hb, 100.1)
    assert w.heartbeat_timeout() == MIN_HEARTBEAT_TIMEOUT
    assert state(heartbeat_timeout=7.5).heartbeat_timeout() == 7.5


def test_an_expired_resume_token_drops_it_and_the_tokens_but_not_the_revocations() -> None:
    w = state(resume_token="old")
    w.apply(token_message(0, "t1", "crm"), 0.0)
    w.cache.revoke(["t0"], [], "x")
    w.resume_expired()
    assert w.resume_token == "" and w.cache.held() == {} and w.cache.is_revoked("t0")


def test_a_token_for_an_unknown_grant_index_is_ignored() -> None:
    w = state()
    assert w.apply(token_message(7, "t1", "mail"), 0.0) == []
    assert w.cache.held() == {}
