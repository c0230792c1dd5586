"""AsyncCredentialManager on grpc.aio: the same behaviour as the thread manager, on the loop."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from capvend import AsyncCredentialManager, Backoff, CapvendError, Disconnected, Failed, Orchestrator, SessionEnded, TokensRevoked
from conftest import SCENARIO_GRANTS
from event_log import EventLog
from fake_vending import FakeServer, Refuse, Serve, token_message
from processes import CapvendServer

FAST = Backoff(initial=0.01, maximum=0.05)


async def wait_for(log: EventLog, kind: type, timeout: float = 15.0) -> object:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: log.wait_for(kind, timeout=timeout))


@pytest.mark.asyncio
async def test_tokens_revocation_and_session_end_against_a_real_server(server: CapvendServer, orchestrator: Orchestrator) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    log = EventLog()
    async with AsyncCredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS, on_event=log) as m:
        crm = await m.get_token("crm")
        assert crm.count(".") == 2 and await m.get_token("calendar", ["read"]) != crm
        held = m.token_info("crm")
        assert held is not None
        orchestrator.revoke(token_id=held.token_id, reason="test")
        revoked = await wait_for(log, TokensRevoked)
        assert isinstance(revoked, TokensRevoked) and held.token_id in revoked.token_ids
        with pytest.raises(CapvendError) as e:
            await m.get_token("crm", timeout=0.2)
        assert e.value.reason_name == "GRANT_REVOKED"
        orchestrator.end_session(session.session_id, "done")
        assert isinstance(await wait_for(log, SessionEnded), SessionEnded)
        with pytest.raises(CapvendError) as e:
            await m.get_token("calendar")
        assert e.value.reason_name == "SESSION_ENDED"
        assert m.state == "ended"
    assert m.state == "ended"


@pytest.mark.asyncio
async def test_a_retryable_refusal_moves_on_and_a_fatal_one_stops() -> None:
    fake = FakeServer([Refuse(grpc.StatusCode.UNAVAILABLE, "RESUME_AHEAD"), Serve([token_message(0, "t1", "crm", resume="r1")])])
    log = EventLog()
    try:
        async with AsyncCredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST) as m:
            assert await m.get_token("crm") == "jwt-t1"
            assert m.token_now("crm") == "jwt-t1"
            assert m.resume_token == "r1"
            assert log.wait_for(Disconnected, timeout=0) is not None
    finally:
        fake.stop()
    fake = FakeServer([Refuse(grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_CREDENTIAL")])
    log = EventLog()
    try:
        async with AsyncCredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST) as m:
            with pytest.raises(CapvendError) as e:
                await m.get_token("crm")
            assert e.value.reason_name == "UNKNOWN_CREDENTIAL"
            assert isinstance(log.wait_for(Failed, timeout=0), Failed)
    finally:
        fake.stop()


@pytest.mark.asyncio
async def test_the_watchdog_replaces_a_silent_stream() -> None:
    fake = FakeServer([Serve([token_message(0, "t1", "crm", resume="r1")]), Serve([token_message(0, "t2", "crm")])])
    log = EventLog()
    try:
        async with AsyncCredentialManager(fake.endpoint, "cred", [("crm", ["read"])], on_event=log, backoff=FAST, heartbeat_timeout=0.3) as m:
            dropped = await wait_for(log, Disconnected)
            assert isinstance(dropped, Disconnected) and dropped.error is not None and "presumed dead" in dropped.error.message
            for _ in range(200):
                if m.token_now("crm") == "jwt-t2":
                    break
                await asyncio.sleep(0.05)
            assert m.token_now("crm") == "jwt-t2"
            fake.service.requests.get(timeout=5)
            assert fake.service.requests.get(timeout=5).resume_token == "r1"
    finally:
        fake.stop()


@pytest.mark.asyncio
async def test_close_is_idempotent_and_leaves_no_task() -> None:
    fake = FakeServer([Serve([token_message(0, "t1", "crm")])])
    try:
        m = AsyncCredentialManager(fake.endpoint, "cred", [("crm", ["read"])])
        m.start()
        await m.get_token("crm")
        await m.close()
        await m.close()
        assert [t for t in asyncio.all_tasks() if t.get_name() == "capvend-watch"] == []
        with pytest.raises(CapvendError) as e:
            await m.get_token("crm")
        assert e.value.code is grpc.StatusCode.CANCELLED
        assert m.state == "closed"
    finally:
        fake.stop()
