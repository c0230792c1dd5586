"""Benchmark of the Python credential manager: the cached get_token cost and the reconnect time.

Run from the repo root with the suite's environment (``bash scripts/test.sh python`` makes it):

    npm run bench -- python
    # or: .venv/python/bin/python clients/python/bench/bench_credential_manager.py

Prints medians, each with a baseline measured in the same run (the machine is shared):
- get_token: nanoseconds per cached call, one thread and four threads at once; baseline: a
  dict lookup under a lock (the least a thread-safe cache can cost).
- reconnect: milliseconds from SIGKILL of the replica holding the stream to the manager's
  ``Connected`` on the other replica (two replicas on one nats-server); baseline: the first
  connect of a fresh manager (channel, stream and the first event).
"""

from __future__ import annotations

import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from capvend import Backoff, Connected, CredentialManager, Orchestrator  # noqa: E402
from conftest import SCENARIO_GRANTS, load_scenario  # noqa: E402
from event_log import EventLog  # noqa: E402
from processes import CapvendServer, NatsServer  # noqa: E402

CALLS = 200_000
ROUNDS = 7
RECONNECTS = 5


def per_call_ns(f: Callable[[str], str], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        f("crm")
    return (time.perf_counter_ns() - start) / calls


def bench_get_token(m: CredentialManager) -> None:
    lock = threading.Lock()
    table = {"crm": "x"}

    def baseline(resource: str) -> str:
        with lock:
            return table[resource]

    m.get_token("crm")
    base = [per_call_ns(baseline, CALLS) for _ in range(ROUNDS)]
    one = [per_call_ns(m.get_token, CALLS) for _ in range(ROUNDS)]
    four: list[float] = []
    for _ in range(ROUNDS):
        results: list[float] = []
        threads = [threading.Thread(target=lambda: results.append(per_call_ns(m.get_token, CALLS // 4))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        four.append(statistics.median(results))
    print(f"get_token (cached), 1 thread:  median {statistics.median(one):7.0f} ns/call  ({ROUNDS} rounds of {CALLS})")
    print(f"get_token (cached), 4 threads: median {statistics.median(four):7.0f} ns/call per thread")
    print(f"baseline dict lookup under a lock: median {statistics.median(base):7.0f} ns/call")


def bench_reconnect(orchestrator_token: str, env: dict[str, str]) -> None:
    nats = NatsServer().start()
    servers: list[CapvendServer] = []
    try:
        failovers: list[float] = []
        first_connects: list[float] = []
        for _ in range(RECONNECTS):
            a = CapvendServer({**env, "NATS_URL": nats.url}).start()
            b = CapvendServer({**env, "NATS_URL": nats.url}).start()
            servers += [a, b]
            with Orchestrator(b.endpoint, orchestrator_token) as orch:
                session = orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
            log = EventLog()
            t0 = time.perf_counter()
            backoff = Backoff()
            with CredentialManager([a.endpoint, b.endpoint], session.session_credential, SCENARIO_GRANTS, on_event=log, backoff=backoff) as m:
                assert log.wait_for(Connected, timeout=30) is not None
                first_connects.append((time.perf_counter() - t0) * 1000)
                m.get_token("crm")
                mark = log.mark()
                t1 = time.perf_counter()
                a.kill(signal.SIGKILL)
                moved = log.wait_for(Connected, lambda e: e.endpoint.endswith(b.endpoint), timeout=60, start=mark)
                assert moved is not None, "no failover"
                failovers.append((time.perf_counter() - t1) * 1000)
            a.cleanup()
            b.cleanup()
        print(f"reconnect after SIGKILL of the replica (failover to the other): median {statistics.median(failovers):6.0f} ms  (n={RECONNECTS}: {', '.join(f'{x:.0f}' for x in failovers)})")
        print(f"baseline first connect of a fresh manager:                      median {statistics.median(first_connects):6.0f} ms")
    finally:
        for s in servers:
            s.cleanup()
        nats.cleanup()


def main() -> None:
    scenario = load_scenario()
    env: dict[str, str] = dict(scenario["server"]["env"])
    token = env["CAPVEND_ORCHESTRATOR_TOKEN"]
    server = CapvendServer(env).start()
    try:
        with Orchestrator(server.endpoint, token) as orch:
            session = orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
        with CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS) as m:
            bench_get_token(m)
    finally:
        server.cleanup()
    bench_reconnect(token, env)


if __name__ == "__main__":
    main()
