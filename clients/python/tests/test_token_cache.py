"""The token cache's rules, on fake time: never revoked, never nearly expired, clear errors."""

from __future__ import annotations

import threading

import grpc
import pytest

from capvend import CapvendError, Grant, HeldToken
from capvend.token_cache import TokenCache


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(tid: str, resource: str = "crm", exp: float = 1010.0, scopes: tuple[str, ...] = ("read", "write")) -> HeldToken:
    return HeldToken(tid, f"jwt-{tid}", resource, frozenset(scopes), exp - 10, exp)


def make(clock: FakeClock, margin: float = 1.0) -> TokenCache:
    return TokenCache([Grant("crm", ["read", "write"]), Grant("calendar", ["read"])], clock=clock, expiry_margin=margin)


def test_a_held_token_is_returned_until_the_margin_before_expiry() -> None:
    clock = FakeClock()
    c = make(clock)
    assert c.lookup("crm") is None
    c.put(0, token("t1"))
    held = c.lookup("crm")
    assert held is not None and held.token_id == "t1"
    clock.now = 1008.9
    assert c.lookup("crm") is not None
    clock.now = 1009.0  # 1 s left: inside the margin
    assert c.lookup("crm") is None


def test_a_revoked_token_is_dropped_and_never_comes_back() -> None:
    c = make(FakeClock())
    c.put(0, token("t1"))
    c.revoke(["t1"], [], "r")
    assert c.lookup("crm") is None
    assert c.put(0, token("t1")) is None  # a replayed or late message
    assert c.lookup("crm") is None
    assert c.put(0, token("t2")) is not None
    held = c.lookup("crm")
    assert held is not None and held.token_id == "t2"


def test_a_stopped_grant_raises_grant_revoked_and_ignores_new_tokens() -> None:
    c = make(FakeClock())
    c.put(1, token("c1", "calendar", scopes=("read",)))
    assert c.revoke(["c1"], [1], "policy") == ("calendar",)
    with pytest.raises(CapvendError) as e:
        c.lookup("calendar")
    assert e.value.reason_name == "GRANT_REVOKED" and e.value.retryable is False
    assert c.put(1, token("c2", "calendar", scopes=("read",))) is None
    assert c.lookup("crm") is None  # other grants are untouched


def test_unknown_resource_and_scope_are_refused() -> None:
    c = make(FakeClock())
    with pytest.raises(CapvendError) as e:
        c.lookup("mail")
    assert e.value.reason_name == "RESOURCE_NOT_GRANTED" and e.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(CapvendError) as e:
        c.lookup("crm", ["delete"])
    assert e.value.reason_name == "SCOPE_NOT_GRANTED" and e.value.metadata["scope"] == "delete"


def test_scopes_must_be_carried_by_the_token() -> None:
    c = make(FakeClock())
    c.put(0, token("t1", scopes=("read",)))
    assert c.lookup("crm", ["read"]) is not None
    assert c.lookup("crm", ["read", "write"]) is None


def test_finish_drops_everything_and_raises_the_terminal_error_first() -> None:
    c = make(FakeClock())
    c.put(0, token("t1"))
    c.revoke([], [1], "x")
    ended = CapvendError("over", reason="SESSION_ENDED", code=grpc.StatusCode.UNAUTHENTICATED)
    assert c.finish(ended) is True
    assert c.finish(CapvendError("again")) is False
    for resource in ("crm", "calendar"):
        with pytest.raises(CapvendError) as e:
            c.lookup(resource)
        assert e.value is ended
    assert c.put(0, token("t2")) is None


def test_wait_times_out_with_a_retryable_error() -> None:
    c = make(FakeClock())
    with pytest.raises(CapvendError) as e:
        c.wait("crm", None, 0.01)
    assert e.value.retryable is True and e.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_wait_returns_when_another_thread_puts_a_token() -> None:
    c = make(FakeClock())
    put = threading.Thread(target=lambda: c.put(0, token("t1")))
    result: list[HeldToken] = []
    waiter = threading.Thread(target=lambda: result.append(c.wait("crm", None, 30)))
    waiter.start()
    put.start()
    put.join()
    waiter.join()
    assert result[0].token_id == "t1"


def test_bad_grants_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenCache([])
    with pytest.raises(ValueError):
        TokenCache([Grant("crm", ["read"]), Grant("crm", ["write"])])
    with pytest.raises(ValueError):
        Grant("", ["read"])
    with pytest.raises(ValueError):
        Grant("crm", [])
    with pytest.raises(ValueError):
        Grant("crm", ["read"], ttl=0)


def test_no_lookup_after_a_revocation_returns_the_revoked_token_under_concurrent_renewals() -> None:
    c = make(FakeClock())
    c.put(0, token("t0"))
    stop = threading.Event()
    violations: list[str] = []
    revoked_done: set[str] = set()
    lock = threading.Lock()

    def writer() -> None:
        for i in range(1, 2000):
            c.put(0, token(f"t{i}"))
            c.revoke([f"t{i - 1}"], [], "rotate")
            with lock:
                revoked_done.add(f"t{i - 1}")  # revoke() has returned
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            with lock:
                before = set(revoked_done)
            held = c.lookup("crm")
            if held is not None and held.token_id in before:
                violations.append(held.token_id)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for r in readers:
        r.start()
    writer()
    for r in readers:
        r.join()
    assert violations == []
    held = c.lookup("crm")
    assert held is not None and held.token_id == "t1999"
