"""A thin typed wrapper for the orchestrator's calls: StartSession, EndSession, Revoke.

Every StartSession carries an idempotent ``request_id`` (a UUID, generated when not given), and
a transport failure is retried with the same id, so a retry never opens a second session.
Refusals raise CapvendError with the contract's reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType

import grpc

from ._rpc import VendingStub, vending_stub
from .backoff import Backoff
from .channels import Endpoint, bearer, open_channel, parse_endpoint
from .errors import CapvendError, error_from_rpc
from .token_cache import Grant
from .v1 import vending_pb2 as pb
from .watch_state import duration_from_seconds, grant_message, grants_of

#: Per-call deadline, seconds.
DEFAULT_CALL_TIMEOUT = 10.0
#: Attempts of a StartSession that failed for a retryable reason (same request_id each time).
DEFAULT_START_ATTEMPTS = 3


@dataclass(frozen=True)
class Session:
    """An opened session. ``session_credential`` is secret: hand it to the runtime, never log it."""

    session_id: str
    session_credential: str = field(repr=False)
    #: Seconds since the epoch.
    expires_at: float
    #: The request_id StartSession was sent with (retry with it to get the same session).
    request_id: str


@dataclass(frozen=True)
class Revocation:
    """A recorded revocation."""

    revocation_id: str
    #: Seconds since the epoch.
    revoked_at: float


def _seconds(ts: object) -> float:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    return float(seconds) + float(nanos) / 1e9


class Orchestrator:
    """Starts, ends and revokes sessions with an orchestrator credential.

    Args:
        endpoint: a capvend replica (``host:port``, ``http://…`` or ``https://…``).
        credential: the orchestrator's bearer credential.
        timeout: per-call deadline, seconds.
        channel: an existing channel to use instead of opening one (not closed by ``close``).
    """

    def __init__(
        self,
        endpoint: str,
        credential: str,
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint: Endpoint = parse_endpoint(endpoint)
        self._metadata = bearer(credential)
        self._timeout = timeout
        self._own_channel = channel is None
        self._channel = channel or open_channel(self._endpoint, channel_credentials)
        self._stub: VendingStub = vending_stub(self._channel)
        self._sleep = sleep

    def start_session(
        self,
        agent_id: str,
        grants: Sequence[Grant | tuple[str, Sequence[str]]],
        *,
        user_id: str | None = None,
        max_duration: float | None = None,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
        attempts: int = DEFAULT_START_ATTEMPTS,
    ) -> Session:
        """Opens a session for ``agent_id`` (acting for ``user_id``) with ``grants``.

        ``request_id`` (a UUID) makes the call safe to retry; one is generated when absent and
        reused for up to ``attempts`` tries of a retryable failure. ``max_duration`` in seconds.
        """
        rid = request_id or str(uuid.uuid4())
        req = pb.StartSessionRequest(
            agent_id=agent_id,
            grants=[grant_message(g) for g in grants_of(grants)],
            labels=dict(labels or {}),
            request_id=rid,
        )
        if user_id is not None:
            req.user_id = user_id
        if max_duration is not None:
            req.max_duration.CopyFrom(duration_from_seconds(max_duration))
        backoff = Backoff()
        for attempt in range(max(1, attempts)):
            try:
                res = self._stub.StartSession(req, timeout=self._timeout, metadata=self._metadata)
                return Session(res.session_id, res.session_credential, _seconds(res.expires_at), rid)
            except grpc.RpcError as e:
                err = error_from_rpc(e)
                if not err.retryable or attempt + 1 >= attempts:
                    raise err from None
                self._sleep(backoff.next_delay())
        raise AssertionError("unreachable")

    def end_session(self, session_id: str, reason: str = "") -> float:
        """Ends a session: its tokens are revoked and its streams closed. Returns when it ended (epoch seconds)."""
        try:
            res = self._stub.EndSession(
                pb.EndSessionRequest(session_id=session_id, reason=reason), timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        return _seconds(res.ended_at)

    def revoke(
        self,
        *,
        token_id: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        resource: str | None = None,
        reason: str = "",
    ) -> Revocation:
        """Revokes every live token matching exactly one target (a token id, session, agent, user or resource)."""
        targets = {"token_id": token_id, "session_id": session_id, "agent_id": agent_id, "user_id": user_id, "resource": resource}
        given = {k: v for k, v in targets.items() if v is not None}
        if len(given) != 1:
            raise ValueError("revoke takes exactly one of token_id, session_id, agent_id, user_id, resource")
        req = pb.RevokeRequest(reason=reason, **given)
        try:
            res = self._stub.Revoke(req, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        return Revocation(res.revocation_id, _seconds(res.revoked_at))

    def close(self) -> None:
        """Closes the channel this object opened. Idempotent."""
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def utc(epoch_seconds: float) -> datetime:
    """An aware UTC datetime for epoch seconds (as the dataclasses here carry)."""
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)


__all__ = ["CapvendError", "Orchestrator", "Revocation", "Session", "utc"]
