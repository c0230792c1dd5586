"""A TCP proxy on loopback that can cut its connections or go silent without closing them."""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``. ``freeze()`` stops forwarding, sockets stay open."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._accept.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def freeze(self) -> None:
        """From now on nothing is forwarded either way, and nothing is closed."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            t = threading.Thread(target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True)
            self._threads.append(t)
            t.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._closed.is_set():
                if self._frozen.is_set():
                    self._closed.wait(0.05)
                    continue
                for key, _ in sel.select(0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    data = src.recv(65536)
                    if not data:
                        return
                    if self._frozen.is_set():
                        continue  # swallowed: the peer never hears of it
                    dst.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            a.close()
            b.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(2)
        self._accept.join(2)
