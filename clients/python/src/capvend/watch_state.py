"""The WatchSession protocol, shared by the thread and asyncio managers: requests, events, liveness.

Feeding it the stream's messages keeps the token cache current and yields the events to report.
It does no I/O and reads no clock of its own, so it is tested with plain messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import duration_pb2

from .errors import CapvendError
from .events import Event, SessionEnded, TokenRenewed, TokensRevoked
from .reasons import is_fatal
from .token_cache import Grant, HeldToken, TokenCache
from .v1 import vending_pb2

#: Liveness before the stream has shown its heartbeat interval: three of the server's default
#: 15 s intervals, seconds.
DEFAULT_HEARTBEAT_TIMEOUT = 45.0
#: Heartbeats that may go missing before the watchdog replaces the connection.
MISSED_HEARTBEATS = 3.0
#: The watchdog never fires sooner than this after the last message, seconds.
MIN_HEARTBEAT_TIMEOUT = 1.0


def grant_message(g: Grant) -> vending_pb2.Grant:
    """The contract's Grant for ``g``."""
    msg = vending_pb2.Grant(resource=g.resource, scopes=list(g.scopes))
    if g.ttl is not None:
        msg.ttl.CopyFrom(duration_from_seconds(g.ttl))
    return msg


def duration_from_seconds(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration of ``seconds``."""
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))


def held_token(t: vending_pb2.Token) -> HeldToken:
    """The in-memory form of a contract Token (times as epoch seconds)."""
    return HeldToken(
        token_id=t.token_id,
        access_token=t.access_token,
        resource=t.resource,
        scopes=frozenset(t.scopes),
        issued_at=t.issued_at.seconds + t.issued_at.nanos / 1e9,
        expires_at=t.expires_at.seconds + t.expires_at.nanos / 1e9,
    )


def session_ended_error(reason: str) -> CapvendError:
    """The error get_token raises once the session is over."""
    return CapvendError(f"the session ended: {reason}", reason="SESSION_ENDED", code=grpc.StatusCode.UNAUTHENTICATED)


class WatchState:
    """Where the stream stands: the resume token, the learned heartbeat interval, the cache."""

    def __init__(self, cache: TokenCache, *, resume_token: str = "", heartbeat_timeout: float | None = None) -> None:
        self.cache = cache
        #: Opaque; the latest one the server sent. Hand it to a new manager for the same session.
        self.resume_token = resume_token
        self._fixed_timeout = heartbeat_timeout
        self._last_heartbeat: float | None = None
        self.heartbeat_interval: float | None = None

    def request(self) -> vending_pb2.WatchSessionRequest:
        """The request that opens (or resumes) the stream."""
        return vending_pb2.WatchSessionRequest(
            grants=[grant_message(g) for g in self.cache.grants], resume_token=self.resume_token
        )

    def heartbeat_timeout(self) -> float:
        """How long (seconds) the stream may stay silent before the connection counts as dead."""
        if self._fixed_timeout is not None:
            return self._fixed_timeout
        if self.heartbeat_interval is None:
            return DEFAULT_HEARTBEAT_TIMEOUT
        return max(MIN_HEARTBEAT_TIMEOUT, MISSED_HEARTBEATS * self.heartbeat_interval)

    def connection_lost(self) -> None:
        """Forgets heartbeat timing that belonged to the previous connection."""
        self._last_heartbeat = None

    def stream_ended(self, error: CapvendError | None) -> CapvendError | None:
        """Decides after a stream ended with ``error``: the fatal error to stop on, or None to reconnect.

        A refused resume token (too old) is dropped with the tokens it covered, so the next
        stream starts fresh; every other non-fatal reason keeps the resume token.
        """
        if error is None:
            return None
        if is_fatal(error.reason_name):
            return error
        if error.reason_name == "RESUME_TOKEN_EXPIRED":
            self.resume_expired()
        return None

    def resume_expired(self) -> None:
        """The server refused the resume token as too old: start fresh, without stale tokens."""
        self.resume_token = ""
        self.cache.discard_held()

    def apply(self, msg: vending_pb2.WatchSessionResponse, now: float) -> list[Event]:
        """Takes one stream message (``now`` from a monotonic clock, seconds); returns the events."""
        if msg.resume_token:
            self.resume_token = msg.resume_token
        kind = msg.WhichOneof("event")
        if kind == "token_issued":
            return self._token_issued(msg.token_issued)
        if kind == "tokens_revoked":
            r = msg.tokens_revoked
            stopped = self.cache.revoke(r.token_ids, r.grant_indexes, r.reason)
            return [TokensRevoked(tuple(r.token_ids), stopped, r.reason)]
        if kind == "session_ended":
            reason = msg.session_ended.reason
            if self.cache.finish(session_ended_error(reason)):
                return [SessionEnded(reason)]
            return []
        if kind == "heartbeat":
            if self._last_heartbeat is not None:
                gap = now - self._last_heartbeat
                if gap > 0 and (self.heartbeat_interval is None or gap < self.heartbeat_interval):
                    self.heartbeat_interval = gap
            self._last_heartbeat = now
        return []

    def _token_issued(self, issued: vending_pb2.TokenIssued) -> list[Event]:
        held = held_token(issued.token)
        grant = self.cache.put(issued.grant_index, held)
        if grant is None:
            return []
        return [TokenRenewed(grant.resource, held.token_id, held.expires_at, issued.replaces_token_id)]


def grants_of(grants: Sequence[Grant | tuple[str, Sequence[str]]]) -> list[Grant]:
    """Accepts Grant objects or ``(resource, scopes)`` pairs."""
    out: list[Grant] = []
    for g in grants:
        out.append(g if isinstance(g, Grant) else Grant(g[0], g[1]))
    return out
