"""The runtime side of a capvend session on asyncio (``grpc.aio``), for async agent frameworks.

Same behaviour as CredentialManager, as one task on the running loop: the stream, renewals,
revocations, failover with backoff and full jitter, resume, the heartbeat watchdog (a read
that waits longer than the timeout replaces the connection), and only fatal reasons stop it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import grpc
import grpc.aio

from ._rpc import AioVendingStub, aio_vending_stub
from .backoff import Backoff
from .channels import Endpoint, bearer, open_aio_channel, parse_endpoints
from .credential_manager import DEFAULT_TOKEN_WAIT, GrantLike
from .errors import CapvendError, error_from_rpc
from .events import Connected, Disconnected, Event, Failed, SessionEnded
from .token_cache import DEFAULT_EXPIRY_MARGIN, HeldToken, TokenCache
from .v1 import vending_pb2 as pb
from .watch_state import WatchState, grants_of

log = logging.getLogger("capvend")


class AsyncCredentialManager:
    """Holds a session's token stream as an asyncio task; ``await get_token(...)`` answers from memory.

    Arguments as for CredentialManager. ``on_event`` is called on the loop. Use
    ``async with AsyncCredentialManager(...) as m:`` or ``start()`` / ``await close()``.
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
    ) -> None:
        self._endpoints: tuple[Endpoint, ...] = parse_endpoints(endpoints)
        self._metadata = bearer(session_credential)
        self._cache = TokenCache(grants_of(grants), clock=clock, expiry_margin=expiry_margin)
        self._watch = WatchState(self._cache, resume_token=resume_token, heartbeat_timeout=heartbeat_timeout)
        self._on_event = on_event
        self._backoff = backoff or Backoff()
        self._credentials = channel_credentials
        self._channels: dict[Endpoint, tuple[grpc.aio.Channel, AioVendingStub]] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._state = "idle"
        self._current: Endpoint | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the stream task on the running loop. Idempotent."""
        if self._task is not None or self._closed:
            return
        self._changed = asyncio.Event()
        self._state = "connecting"
        self._task = asyncio.get_running_loop().create_task(self._run(), name="capvend-watch")

    async def get_token(self, resource: str, scopes: Sequence[str] | None = None, *, timeout: float = DEFAULT_TOKEN_WAIT) -> str:
        """A valid access token for ``resource``; the same rules and errors as CredentialManager.get_token."""
        held = self._cache.lookup(resource, scopes)
        if held is not None:
            return held.access_token
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            assert changed is not None
            changed.clear()
            held = self._cache.lookup(resource, scopes)
            if held is not None:
                return held.access_token
            left = deadline - loop.time()
            if left <= 0:
                raise CapvendError(
                    f"no valid token for {resource!r} arrived within {timeout:g} s",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                    retryable=True,
                    metadata={"resource": resource},
                )
            try:
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass  # re-check: a held token may have crossed its margin

    def token_now(self, resource: str, scopes: Sequence[str] | None = None) -> str | None:
        """The usable token held now, without waiting; None when there is none yet."""
        held = self._cache.lookup(resource, scopes)
        return held.access_token if held else None

    def token_info(self, resource: str) -> HeldToken | None:
        """The token held for ``resource`` now (ids and expiry), or None."""
        return self._cache.held().get(resource)

    @property
    def resume_token(self) -> str:
        """The stream's latest resume token."""
        return self._watch.resume_token

    @property
    def state(self) -> str:
        """``idle``, ``connecting``, ``ready``, ``reconnecting``, ``ended``, ``failed`` or ``closed``."""
        return self._state

    @property
    def error(self) -> CapvendError | None:
        """Why the manager stopped, or None while it runs."""
        return self._cache.terminal

    def known_secrets(self) -> frozenset[str]:
        """Every token this manager has held, for exact-match scrubbing."""
        return self._cache.secrets()

    async def close(self) -> None:
        """Stops the stream, forgets every token and closes the channels. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._cache.finish(CapvendError("the credential manager is closed", code=grpc.StatusCode.CANCELLED, retryable=False))
        self._notify()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        channels = list(self._channels.values())
        self._channels.clear()
        for channel, _ in channels:
            await channel.close()
        if self._state not in ("ended", "failed"):
            self._state = "closed"

    async def __aenter__(self) -> AsyncCredentialManager:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- the task ------------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _emit(self, event: Event) -> None:
        self._notify()
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a listener must not stop the stream
            log.exception("capvend: on_event listener raised; the stream goes on")

    def _stub(self, endpoint: Endpoint) -> AioVendingStub:
        found = self._channels.get(endpoint)
        if found is None:
            channel = open_aio_channel(endpoint, self._credentials)
            found = (channel, aio_vending_stub(channel))
            self._channels[endpoint] = found
        return found[1]

    async def _run(self) -> None:
        index = 0
        while not self._closed:
            endpoint = self._endpoints[index % len(self._endpoints)]
            error = await self._stream_once(endpoint)
            if self._closed or self._cache.terminal is not None:
                self._notify()
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
            await asyncio.sleep(delay)

    async def _stream_once(self, endpoint: Endpoint) -> CapvendError | None:
        self._current = endpoint
        resumed = bool(self._watch.resume_token)
        call = self._stub(endpoint).WatchSession(self._watch.request(), metadata=self._metadata)
        self._watch.connection_lost()
        connected = False
        try:
            while True:
                timeout = self._watch.heartbeat_timeout()
                try:
                    msg = await asyncio.wait_for(call.read(), timeout)
                except asyncio.TimeoutError:
                    call.cancel()
                    return CapvendError(
                        f"no message from {endpoint} for {timeout:g} s: connection presumed dead",
                        code=grpc.StatusCode.UNAVAILABLE,
                        retryable=True,
                    )
                if msg is grpc.aio.EOF:
                    return None
                assert isinstance(msg, pb.WatchSessionResponse)
                if not connected:
                    connected = True
                    self._backoff.reset()
                    self._state = "ready"
                    self._emit(Connected(str(endpoint), resumed))
                events = self._watch.apply(msg, time.monotonic())
                for event in events:
                    self._emit(event)
                self._notify()
                if any(isinstance(e, SessionEnded) for e in events):
                    self._state = "ended"
                if self._cache.terminal is not None:  # the session ended, or close() ran meanwhile
                    call.cancel()
                    return None
        except grpc.aio.AioRpcError as e:
            return error_from_rpc(e)
        finally:
            if not call.done():
                call.cancel()
