"""Fixtures: real capvend server processes (and nats-server where a restart must keep state)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from capvend import Orchestrator
from processes import NATS_SERVER_BIN, REPO_ROOT, CapvendServer, NatsServer

SCENARIO_FILE = REPO_ROOT / "test" / "scenario" / "scenario.json"


def load_scenario() -> dict[str, Any]:
    with open(SCENARIO_FILE, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


@pytest.fixture(scope="session")
def scenario() -> dict[str, Any]:
    return load_scenario()


@pytest.fixture(scope="session")
def server_env(scenario: dict[str, Any]) -> dict[str, str]:
    """The scenario's server settings: short TTLs (6 s), 1 s heartbeats, its own policy."""
    env: dict[str, str] = dict(scenario["server"]["env"])
    return env


@pytest.fixture(scope="session")
def orchestrator_token(server_env: dict[str, str]) -> str:
    return server_env["CAPVEND_ORCHESTRATOR_TOKEN"]


@pytest.fixture(scope="module")
def server(server_env: dict[str, str]) -> Iterator[CapvendServer]:
    """One capvend process for a test module."""
    srv = CapvendServer(server_env).start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture()
def orchestrator(server: CapvendServer, orchestrator_token: str) -> Iterator[Orchestrator]:
    with Orchestrator(server.endpoint, orchestrator_token) as orch:
        yield orch


@pytest.fixture()
def nats() -> Iterator[NatsServer]:
    if not os.path.exists(NATS_SERVER_BIN):
        pytest.fail(f"nats-server is missing at {NATS_SERVER_BIN}; install the nats-server package")
    n = NatsServer().start()
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture()
def no_thread_leaks() -> Iterator[None]:
    """Fails the test when capvend threads outlive it."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("capvend-") and t.name != "capvend-server-log"]
    assert leaked == [], f"threads left running: {leaked}"


SCENARIO_GRANTS = [("crm", ["read", "write"]), ("calendar", ["read"])]
