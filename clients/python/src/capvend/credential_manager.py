"""The runtime side of a capvend session, on a background thread.

The manager holds one ``WatchSession`` stream, keeps the newest token of each grant in memory,
drops a token the moment the server revokes it, and reconnects (to the next endpoint, with
backoff and full jitter, resuming with the resume token) when the stream drops, the server
drains or the heartbeat goes quiet. Only a fatal reason (credential refused, session over)
stops it. Agent code calls ``get_token`` or uses an injector; the LLM never sees a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import grpc

from ._rpc import VendingStub, vending_stub
from .backoff import Backoff
from .channels import Endpoint, bearer, open_channel, parse_endpoints
from .errors import CapvendError, error_from_rpc
from .events import Connected, Disconnected, Event, Failed, SessionEnded
from .token_cache import DEFAULT_EXPIRY_MARGIN, Grant, HeldToken, TokenCache
from .watch_state import WatchState, grants_of

log = logging.getLogger("capvend")

#: How long get_token waits for a first (or renewed) token, seconds.
DEFAULT_TOKEN_WAIT = 10.0
#: How long close() waits for the background threads, seconds.
CLOSE_JOIN_TIMEOUT = 5.0

GrantLike = Grant | tuple[str, Sequence[str]]


class CredentialManager:
    """Holds a session's token stream on a background thread; ``get_token`` answers from memory.

    Args:
        endpoints: one capvend replica or several (``host:port``, ``http://…`` or ``https://…``);
            reconnects go round the list.
        session_credential: the credential from StartSession. Kept in this object only.
        grants: the grants to keep fresh (``Grant`` or ``(resource, scopes)``).
        resume_token: from an earlier manager of the same session (``resume_token`` property),
            so a restarted process replays what it missed.
        on_event: called on the manager's thread for each event; events never carry a token.
        heartbeat_timeout: seconds of silence after which the connection is replaced; by
            default three of the heartbeat intervals the stream shows (45 s until it has).
        expiry_margin: a token with less life left than this (seconds) is not handed out.
        backoff: reconnect delays; 0.1 s doubling to 5 s, full jitter, by default.
        channel_credentials: TLS settings; ``https://`` endpoints use the system roots.
        start: open the stream now (default) rather than at ``start()`` or ``with``.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        session_credential: str,
        grants: Sequence[GrantLike],
        *,
        resume_token: str = "",
        on_event: Callable[[Event], None] | None = None,
        heartbeat_timeout: float | None = None,
        expiry_margin: float = DEFAULT_EXPIRY_MARGIN,
        backoff: Backoff | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        self._endpoints: tuple[Endpoint, ...] = parse_endpoints(endpoints)
        self._metadata = bearer(session_credential)
        self._cache = TokenCache(grants_of(grants), clock=clock, expiry_margin=expiry_margin)
        self._watch = WatchState(self._cache, resume_token=resume_token, heartbeat_timeout=heartbeat_timeout)
        self._on_event = on_event
        self._backoff = backoff or Backoff()
        self._credentials = channel_credentials
        self._channels: dict[Endpoint, tuple[grpc.Channel, VendingStub]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: grpc.Call | None = None
        self._call_started = 0.0
        self._last_message = 0.0
        self._watchdog_fired = False
        self._state = "idle"
        self._current: Endpoint | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._closed = False
        if start:
            self.start()

    # -- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Opens the stream on a background thread. Idempotent."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="capvend-watch", daemon=True)
            self._watchdog = threading.Thread(target=self._watch_liveness, name="capvend-watchdog", daemon=True)
            self._state = "connecting"
            self._thread.start()
            self._watchdog.start()

    def get_token(self, resource: str, scopes: Sequence[str] | None = None, *, timeout: float = DEFAULT_TOKEN_WAIT) -> str:
        """A valid access token for ``resource`` (carrying ``scopes``, when given), from memory.

        Never returns a revoked token or one within the expiry margin of its end. Waits up to
        ``timeout`` seconds only while no usable token is held (first connect, renewal late).
        Raises CapvendError: the session ended or the credential was refused (the fatal
        reason), the grant was revoked (``GRANT_REVOKED``), the resource or a scope is not
        among the grants, the manager is closed, or the wait timed out (retryable).
        """
        held = self._cache.lookup(resource, scopes)
        if held is None:
            held = self._cache.wait(resource, scopes, timeout)
        return held.access_token

    def token_info(self, resource: str) -> HeldToken | None:
        """The token held for ``resource`` now (for ids and expiry; usable or not), or None."""
        return self._cache.held().get(resource)

    @property
    def resume_token(self) -> str:
        """The stream's latest resume token: give it to a new manager of the same session."""
        return self._watch.resume_token

    @property
    def state(self) -> str:
        """``idle``, ``connecting``, ``ready``, ``reconnecting``, ``ended``, ``failed`` or ``closed``."""
        return self._state

    @property
    def endpoint(self) -> str | None:
        """The endpoint of the stream now open or being opened."""
        return str(self._current) if self._current else None

    @property
    def liveness_timeout(self) -> float:
        """Seconds of silence after which the watchdog replaces the connection (learned from heartbeats)."""
        return self._watch.heartbeat_timeout()

    @property
    def error(self) -> CapvendError | None:
        """Why the manager stopped, or None while it runs."""
        return self._cache.terminal

    def known_secrets(self) -> frozenset[str]:
        """Every token this manager has held, for exact-match scrubbing."""
        return self._cache.secrets()

    def close(self) -> None:
        """Stops the stream, forgets every token, ends both threads and closes the channels. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            call = self._call
        self._cache.finish(CapvendError("the credential manager is closed", code=grpc.StatusCode.CANCELLED, retryable=False))
        self._stop.set()
        if call is not None:
            call.cancel()
        me = threading.current_thread()
        for t in (self._thread, self._watchdog):
            if t is not None and t is not me:
                t.join(CLOSE_JOIN_TIMEOUT)
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel, _ in channels:
            channel.close()
        if self._state not in ("ended", "failed"):
            self._state = "closed"

    def __enter__(self) -> CredentialManager:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CredentialManager(endpoints={[str(e) for e in self._endpoints]!r}, state={self._state!r})"

    # -- background ----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a listener must not stop the stream
            log.exception("capvend: on_event listener raised; the stream goes on")

    def _stub(self, endpoint: Endpoint) -> VendingStub:
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            found = self._channels.get(endpoint)
            if found is None:
                channel = open_channel(endpoint, self._credentials)
                found = (channel, vending_stub(channel))
                self._channels[endpoint] = found
            return found[1]

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                endpoint = self._endpoints[index % len(self._endpoints)]
                error = self._stream_once(endpoint)
                if self._stop.is_set() or self._cache.terminal is not None:
                    return
                fatal = self._watch.stream_ended(error)
                if fatal is not None:
                    if self._cache.finish(fatal):
                        self._state = "failed"
                        self._emit(Failed(fatal))
                    return
                index += 1
                delay = self._backoff.next_delay()
                self._state = "reconnecting"
                self._emit(Disconnected(str(endpoint), error, delay))
                self._stop.wait(delay)
        finally:
            with self._lock:
                self._call = None

    def _stream_once(self, endpoint: Endpoint) -> CapvendError | None:
        """Runs one stream to its end; returns why it ended (None: closed by the server)."""
        self._current = endpoint
        resumed = bool(self._watch.resume_token)
        try:
            stub = self._stub(endpoint)
        except RuntimeError:
            return None  # closed while starting
        call = stub.WatchSession(self._watch.request(), metadata=self._metadata)
        with self._lock:
            if self._closed:
                call.cancel()
                return None
            self._call = call
            self._watchdog_fired = False
            self._last_message = self._call_started = time.monotonic()
        self._watch.connection_lost()
        connected = False
        try:
            for msg in call:
                now = time.monotonic()
                self._last_message = now
                if not connected:
                    connected = True
                    self._backoff.reset()
                    self._state = "ready"
                    self._emit(Connected(str(endpoint), resumed))
                events = self._watch.apply(msg, now)
                for event in events:
                    self._emit(event)
                if any(isinstance(e, SessionEnded) for e in events):
                    self._state = "ended"
                if self._cache.terminal is not None:  # the session ended, or close() ran meanwhile
                    call.cancel()
                    return None
            return None
        except grpc.RpcError as e:
            if self._watchdog_fired:
                return CapvendError(
                    f"no message from {endpoint} for {self._watch.heartbeat_timeout():g} s: connection presumed dead",
                    code=grpc.StatusCode.UNAVAILABLE,
                    retryable=True,
                )
            return error_from_rpc(e)
        finally:
            with self._lock:
                self._call = None

    def _watch_liveness(self) -> None:
        """Cancels the stream when nothing (not even a heartbeat) arrived for the timeout."""
        while not self._stop.is_set():
            timeout = self._watch.heartbeat_timeout()
            with self._lock:
                call = self._call
                silent = time.monotonic() - self._last_message
            if call is not None and silent > timeout:
                log.warning("capvend: stream silent for %.1f s (limit %.1f s); reconnecting", silent, timeout)
                self._watchdog_fired = True
                call.cancel()
                with self._lock:
                    self._last_message = time.monotonic()
            self._stop.wait(min(1.0, max(0.05, timeout / 4)))
