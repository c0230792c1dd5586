"""The shared client scenario (test/scenario/scenario.json), driven through the Python client.

Every step runs against real capvend server processes; the observations are written to
``$CAPVEND_SCENARIO_OUT/python.json`` (compared with the other languages' by the last suite)
and each must equal its step's expectation.

The restart step needs the session, its revocations and the resume position to survive a
SIGKILL. The servers therefore share a real JetStream nats-server (``NATS_URL``), which keeps
sessions and revocations across the restart, on the same port and data directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from capvend import (
    CapvendError,
    CredentialManager,
    Failed,
    Grant,
    Orchestrator,
    SessionEnded,
    TokenRenewed,
    TokensRevoked,
    issue_token,
)
from event_log import EventLog
from processes import REPO_ROOT, CapvendServer, NatsServer

LANGUAGE = "python"


def seconds(text: str) -> float:
    """``"10s"``, ``"1.5s"``, ``"500ms"`` or ``"2m"`` as seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value * 60 if m.group(2) == "m" else value


def rpc_error(err: CapvendError) -> dict[str, str]:
    return {"code": err.code.name if err.code is not None else "UNKNOWN", "reason": err.reason_name}


class Driver:
    """Runs the scenario's steps in order, keeping what later steps need."""

    def __init__(self, server: CapvendServer, orchestrator_token: str) -> None:
        self.server = server
        self.orchestrator_token = orchestrator_token
        self.session_id = ""
        self.credential = ""
        self.grants: list[Grant] = []
        self.events = EventLog()
        self.manager: CredentialManager | None = None

    def orchestrator(self) -> Orchestrator:
        return Orchestrator(self.server.endpoint, self.orchestrator_token)

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"do_{step['do']}", None)
        if handler is None:
            raise AssertionError(f"step {step['id']}: unknown kind {step['do']!r}")
        observed: dict[str, Any] = handler(step)
        return observed

    def do_start_session(self, step: dict[str, Any]) -> dict[str, Any]:
        self.grants = [Grant(g["resource"], g["scopes"]) for g in step["grants"]]
        with self.orchestrator() as orch:
            session = orch.start_session(step["agent_id"], self.grants, user_id=step.get("user_id"))
        self.session_id, self.credential = session.session_id, session.session_credential
        return {"ok": bool(session.session_id and session.session_credential)}

    def do_watch(self, step: dict[str, Any]) -> dict[str, Any]:
        self.manager = CredentialManager(self.server.endpoint, self.credential, self.grants, on_event=self.events)
        timeout = seconds(step["timeout"])
        held: list[str] = []
        for g in self.grants:
            try:
                self.manager.get_token(g.resource, timeout=timeout)
                held.append(g.resource)
            except CapvendError:
                pass
        return {"tokens_for": sorted(held)}

    def do_await_renewal(self, step: dict[str, Any]) -> dict[str, Any]:
        assert self.manager is not None
        resource = step["resource"]
        old = self.manager.token_info(resource)
        assert old is not None, f"no {resource} token held before the renewal step"
        renewal = self.events.wait_for(
            TokenRenewed,
            lambda e: e.resource == resource and e.token_id != old.token_id and e.replaces_token_id == old.token_id,
            timeout=seconds(step["timeout"]),
        )
        if renewal is None:
            return {"renewed": False, "before_expiry": False}
        now_token = self.manager.get_token(resource)
        renewed = now_token != old.access_token
        return {"renewed": renewed, "before_expiry": self.events.received(renewal) < old.expires_at}

    def do_revoke_token(self, step: dict[str, Any]) -> dict[str, Any]:
        assert self.manager is not None
        resource = step["resource"]
        held = self.manager.token_info(resource)
        assert held is not None, f"no {resource} token held to revoke"
        mark = self.events.mark()
        with self.orchestrator() as orch:
            orch.revoke(token_id=held.token_id, reason=step["reason"])
        event = self.events.wait_for(
            TokensRevoked, lambda e: held.token_id in e.token_ids, timeout=seconds(step["timeout"]), start=mark
        )
        try:
            returned = self.manager.get_token(resource, timeout=0.5) == held.access_token
        except CapvendError:
            returned = False
        return {"revoked_event": event is not None, "revoked_token_returned": returned}

    def do_watch_with_credential(self, step: dict[str, Any]) -> dict[str, Any]:
        log = EventLog()
        with CredentialManager(self.server.endpoint, step["credential"], self.grants, on_event=log) as m:
            failed = log.wait_for(Failed, timeout=10.0)
        if failed is None:
            return {"error": None}
        return {"error": rpc_error(failed.error)}

    def do_issue_token(self, step: dict[str, Any]) -> dict[str, Any]:
        ttl = seconds(step["ttl"]) if "ttl" in step else None
        try:
            issue_token(self.server.endpoint, self.credential, step["resource"], step["scopes"], ttl=ttl)
        except CapvendError as e:
            return {"error": rpc_error(e)}
        return {"ok": True}

    def do_restart_server(self, step: dict[str, Any]) -> dict[str, Any]:
        self.server.kill(getattr(signal, step["signal"]))
        self.server.start()
        return {"ok": self.server.running}

    def do_end_session(self, step: dict[str, Any]) -> dict[str, Any]:
        assert self.manager is not None
        mark = self.events.mark()
        with self.orchestrator() as orch:
            orch.end_session(self.session_id, step["reason"])
        ended = self.events.wait_for(SessionEnded, timeout=seconds(step["timeout"]), start=mark)
        self.manager.close()  # joins the threads; the state stays "ended" when the session ended first
        stopped = self.manager.state == "ended" and self.manager.error is not None
        try:
            self.manager.get_token(self.grants[0].resource, timeout=0.5)
            error: dict[str, str] | None = None
        except CapvendError as e:
            error = {"reason": e.reason_name}
        return {"ended_event": ended is not None, "manager_stopped": stopped, "get_token_error": error}


def test_scenario(scenario: dict[str, Any], server_env: dict[str, str], orchestrator_token: str, nats: NatsServer) -> None:
    server = CapvendServer({**server_env, "NATS_URL": nats.url}).start()
    driver = Driver(server, orchestrator_token)
    results: list[dict[str, Any]] = []
    try:
        for step in scenario["steps"]:
            results.append({"id": step["id"], "observed": driver.run(step)})
    except BaseException:
        print("capvend server log (last lines):\n" + "\n".join(list(server.lines)[-40:]))
        raise
    finally:
        if driver.manager is not None:
            driver.manager.close()
        server.cleanup()
        out = Path(os.environ.get("CAPVEND_SCENARIO_OUT") or REPO_ROOT / ".scenario-results")
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{LANGUAGE}.json").write_text(json.dumps({"language": LANGUAGE, "results": results}, indent=2) + "\n")
    mismatches = [
        f"{step['id']}: expected {step['expect']}, observed {r['observed']}"
        for step, r in zip(scenario["steps"], results)
        if r["observed"] != step["expect"]
    ]
    assert len(results) == len(scenario["steps"])
    assert mismatches == []


@pytest.mark.parametrize("text,expected", [("10s", 10.0), ("300s", 300.0), ("500ms", 0.5), ("2m", 120.0)])
def test_durations_in_the_scenario_are_read(text: str, expected: float) -> None:
    assert seconds(text) == expected
