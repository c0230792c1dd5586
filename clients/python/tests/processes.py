"""Real capvend and nats-server processes for the tests: free loopback ports, own directories.

A server can be killed and started again on the same port and data directory. Nothing here
waits on the clock for correctness: readiness is the server's own "capvend listening" log line
(or nats-server's /healthz).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

#: The repository root (clients/python/tests/ is three levels down).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: The built server; ``npm run build`` makes it.
CLI = REPO_ROOT / "dist" / "src" / "cli.js"
#: Debian's nats-server; override with $NATS_SERVER_BIN.
NATS_SERVER_BIN = os.environ.get("NATS_SERVER_BIN", "/usr/sbin/nats-server")
#: How long a server may take to say it listens, seconds.
READY_TIMEOUT = 60.0
#: How long a SIGTERM'd process gets before SIGKILL, seconds.
STOP_GRACE = 10.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CapvendServer:
    """One ``node dist/src/cli.js serve`` process that can be killed and started again in place."""

    def __init__(self, env: Mapping[str, str], *, port: int | None = None, data_dir: str | None = None) -> None:
        if not CLI.exists():
            raise RuntimeError(f"{CLI} is missing: run `npm run build` at the repo root first")
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="capvend-py-")
        self.env = dict(env)
        self.lines: collections.deque[str] = collections.deque(maxlen=400)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> CapvendServer:
        """Starts the process and returns once it logged that it listens."""
        env = {**os.environ, **self.env}
        env["CAPVEND_LISTEN"] = self.endpoint
        env["CAPVEND_DATA_DIR"] = self.data_dir
        for key, value in list(env.items()):
            # Relative paths in the scenario's env are relative to the repo root.
            if key.endswith("_DIR") and value and not os.path.isabs(value):
                env[key] = str(REPO_ROOT / value)
        self._ready.clear()
        proc = subprocess.Popen(
            ["node", str(CLI), "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._proc = proc
        self._reader = threading.Thread(target=self._read, args=(proc,), name="capvend-server-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = "\n".join(list(self.lines)[-30:])
                raise RuntimeError(f"capvend did not start (exit {proc.returncode}):\n{tail}")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if '"capvend listening"' in line:
                try:
                    if json.loads(line).get("msg") == "capvend listening":
                        self._ready.set()
                except ValueError:
                    pass
        proc.stdout.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` and waits for the process to be gone (SIGKILL after the grace)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._proc = None

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        self.kill(signal.SIGTERM)

    def cleanup(self) -> None:
        """Stops the process and removes its data directory when this object made it."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class NatsServer:
    """A JetStream nats-server on free loopback ports with its own store."""

    def __init__(self) -> None:
        self.port = free_port()
        self.monitor_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="capvend-py-nats-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        store = os.path.join(self.dir, "store")
        os.makedirs(store, exist_ok=True)
        args = [NATS_SERVER_BIN, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        args += ["-sd", store, "--server_name", f"n-{self.port}", "-l", os.path.join(self.dir, "server.log")]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not become healthy")
            time.sleep(0.05)

    def cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
