"""CredentialManager against real capvend processes: tokens, renewal, revocation, failover,
resume across a restart, the heartbeat watchdog behind a proxy that goes silent, and no
thread left behind."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from capvend import (
    Backoff,
    CapvendError,
    Connected,
    CredentialManager,
    Disconnected,
    Failed,
    Orchestrator,
    SessionEnded,
    TokenRenewed,
    TokensRevoked,
)
from conftest import SCENARIO_GRANTS
from event_log import EventLog
from processes import CapvendServer, NatsServer
from capvend.watch_state import DEFAULT_HEARTBEAT_TIMEOUT
from tcp_proxy import TcpProxy


def wait_until(predicate: "Callable[[], bool]", timeout: float = 20.0) -> bool:
    """Polls ``predicate`` until true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()

FAST = Backoff(initial=0.05, maximum=0.5)


def test_tokens_for_every_grant_then_renewal_before_expiry(server: CapvendServer, orchestrator: Orchestrator, no_thread_leaks: None) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    log = EventLog()
    with CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log) as m:
        first = m.get_token("crm", ["read"])
        assert m.get_token("calendar") != first
        held = m.token_info("crm")
        assert held is not None and repr(held).count(first) == 0
        renewal = log.wait_for(TokenRenewed, lambda e: e.resource == "crm" and e.replaces_token_id == held.token_id, timeout=20)
        assert renewal is not None and log.received(renewal) < held.expires_at
        assert m.get_token("crm") != first
        assert m.state == "ready"
        assert first in m.known_secrets()
    assert m.state == "closed"


def test_a_revoked_token_is_never_returned_and_the_grant_reports_why(server: CapvendServer, orchestrator: Orchestrator, no_thread_leaks: None) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    log = EventLog()
    with CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log) as m:
        token = m.get_token("crm")
        held = m.token_info("crm")
        assert held is not None
        orchestrator.revoke(token_id=held.token_id, reason="leaked")
        assert log.wait_for(TokensRevoked, lambda e: held.token_id in e.token_ids) is not None
        with pytest.raises(CapvendError) as e:
            m.get_token("crm", timeout=0.2)
        assert e.value.reason_name == "GRANT_REVOKED" and token not in str(e.value)
        assert m.get_token("calendar")  # the other grant goes on


def test_an_unknown_credential_stops_the_manager_for_good(server: CapvendServer, no_thread_leaks: None) -> None:
    log = EventLog()
    bad = "ses_0000000000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    with CredentialManager(server.endpoint, bad, SCENARIO_GRANTS, on_event=log, backoff=FAST) as m:
        failed = log.wait_for(Failed)
        assert failed is not None
        assert (failed.error.code.name if failed.error.code else None, failed.error.reason_name) == ("UNAUTHENTICATED", "UNKNOWN_CREDENTIAL")
        with pytest.raises(CapvendError) as e:
            m.get_token("crm")
        assert e.value.reason_name == "UNKNOWN_CREDENTIAL"
        assert bad not in str(e.value)


def test_session_end_stops_it_with_session_ended(server: CapvendServer, orchestrator: Orchestrator, no_thread_leaks: None) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    log = EventLog()
    with CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log) as m:
        m.get_token("crm")
        orchestrator.end_session(session.session_id, "done")
        assert log.wait_for(SessionEnded) is not None
        with pytest.raises(CapvendError) as e:
            m.get_token("crm")
        assert e.value.reason_name == "SESSION_ENDED"
        assert m.state == "ended"


def test_the_watchdog_replaces_a_connection_that_went_silent(server: CapvendServer, orchestrator: Orchestrator, no_thread_leaks: None) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    proxy = TcpProxy(server.port)
    log = EventLog()
    try:
        # Two endpoints: the silent proxy, then the server itself.
        with CredentialManager([proxy.endpoint, server.endpoint], session.session_credential, SCENARIO_GRANTS, on_event=log, backoff=FAST) as m:
            m.get_token("crm")
            # Heartbeats every second: wait until the manager has learned the interval.
            # Heartbeats come every second: wait until the manager has learned the interval.
            assert wait_until(lambda: m.liveness_timeout < DEFAULT_HEARTBEAT_TIMEOUT)
            proxy.freeze()
            dropped = log.wait_for(Disconnected, timeout=30)
            assert dropped is not None, log.events
            assert dropped.error is not None and "presumed dead" in dropped.error.message, dropped
            moved = log.wait_for(Connected, lambda e: e.endpoint.endswith(server.endpoint) and e.resumed, timeout=30)
            assert moved is not None
            assert m.get_token("crm")
    finally:
        proxy.close()


@pytest.fixture()
def replicas(server_env: dict[str, str], nats: NatsServer) -> Iterator[list[CapvendServer]]:
    env = {**server_env, "NATS_URL": nats.url}
    servers = [CapvendServer(env).start(), CapvendServer(env).start()]
    yield servers
    for s in servers:
        s.cleanup()


def test_failover_to_the_second_replica_when_the_first_is_killed(
    replicas: list[CapvendServer], orchestrator_token: str, no_thread_leaks: None
) -> None:
    a, b = replicas
    log = EventLog()
    with Orchestrator(b.endpoint, orchestrator_token) as orch:
        session = orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    with CredentialManager([a.endpoint, b.endpoint], session.session_credential, SCENARIO_GRANTS, on_event=log, backoff=FAST) as m:
        m.get_token("crm")
        first = log.wait_for(Connected)
        assert first is not None and first.endpoint.endswith(a.endpoint) and not first.resumed
        mark = log.mark()
        a.kill(signal.SIGKILL)
        moved = log.wait_for(Connected, lambda e: e.endpoint.endswith(b.endpoint), timeout=30, start=mark)
        assert moved is not None and moved.resumed
        assert log.wait_for(TokenRenewed, lambda e: e.resource == "crm", start=mark) is not None
        assert m.get_token("crm") and m.state == "ready"


def test_a_revocation_made_while_the_stream_was_down_is_replayed_on_resume(
    replicas: list[CapvendServer], orchestrator_token: str, no_thread_leaks: None
) -> None:
    a, b = replicas
    log = EventLog()
    with Orchestrator(b.endpoint, orchestrator_token) as orch:
        session = orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
        # Only replica A: while it is down the manager cannot reconnect anywhere.
        with CredentialManager(a.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log, backoff=FAST) as m:
            m.get_token("crm")
            old = m.get_token("calendar")
            calendar = m.token_info("calendar")
            assert calendar is not None and calendar.access_token == old
            a.kill(signal.SIGKILL)
            orch.revoke(token_id=calendar.token_id, reason="while away")
            assert log.wait_for(Disconnected) is not None
            a.start()  # same port, same data directory
            revoked = log.wait_for(TokensRevoked, lambda e: calendar.token_id in e.token_ids, timeout=30)
            assert revoked is not None
            resumed = log.wait_for(Connected, lambda e: e.resumed)
            assert resumed is not None
            try:
                assert m.get_token("calendar", timeout=0.5) != old
            except CapvendError as e:
                assert e.reason_name == "GRANT_REVOKED"


def test_close_twice_from_any_thread_and_no_thread_survives(server: CapvendServer, orchestrator: Orchestrator, no_thread_leaks: None) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    m = CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS)
    m.get_token("crm")
    names = {t.name for t in threading.enumerate()}
    assert {"capvend-watch", "capvend-watchdog"} <= names
    closer = threading.Thread(target=m.close)
    closer.start()
    m.close()
    closer.join()
    assert not any(t.name in ("capvend-watch", "capvend-watchdog") for t in threading.enumerate())
    with pytest.raises(CapvendError):
        m.get_token("crm")


def test_a_single_replica_restart_keeps_the_session_with_the_embedded_store(
    server_env: dict[str, str], orchestrator_token: str, no_thread_leaks: None
) -> None:
    # No NATS: the server keeps sessions and revocations in its data directory.
    srv = CapvendServer(server_env).start()
    log = EventLog()
    try:
        with Orchestrator(srv.endpoint, orchestrator_token) as orch:
            session = orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
        with CredentialManager(srv.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log, backoff=FAST) as m:
            m.get_token("crm")
            srv.kill(signal.SIGKILL)
            assert log.wait_for(Disconnected) is not None
            mark = log.mark()
            srv.start()  # same port and data directory
            resumed = log.wait_for(Connected, lambda e: e.resumed, timeout=30, start=mark)
            assert resumed is not None, log.events
            assert log.wait_for(TokenRenewed, lambda e: e.resource == "calendar", start=mark) is not None
            calendar = m.token_info("calendar")
            assert calendar is not None
            with Orchestrator(srv.endpoint, orchestrator_token) as orch:
                orch.revoke(token_id=calendar.token_id, reason="after restart")
            assert log.wait_for(TokensRevoked, lambda e: calendar.token_id in e.token_ids, start=mark) is not None
            assert m.state == "ready"
    finally:
        srv.cleanup()
