"""A loopback HTTP server that records the Authorization header it gets and can refuse tokens."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoServer:
    """GET/POST anything: 200 with {"authorization": ...} unless the bearer is in ``refuse`` (401)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.refuse: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization", "")
                outer.seen.append(auth)
                token = auth.removeprefix("Bearer ")
                status = 401 if token in outer.refuse else 200
                payload = json.dumps({"authorization": auth, "body": body.decode()}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-echo", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class FakeSource:
    """A token source whose current token the test sets (the manager's contract, nothing more)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0
        self.after_first: str | None = None

    def get_token(self, resource: str, scopes: "object" = None) -> str:
        self.calls += 1
        if self.calls > 1 and self.after_first is not None:
            return self.after_first
        return self.token

    def known_secrets(self) -> frozenset[str]:
        return frozenset({self.token} | ({self.after_first} if self.after_first else set()))


class AsyncFakeSource(FakeSource):
    async def get_token(self, resource: str, scopes: "object" = None) -> str:  # type: ignore[override]
        return FakeSource.get_token(self, resource, scopes)
