"""The tokens a credential manager holds, and the rules for handing one out.

A token is handed out only while it is unrevoked and has more than the expiry margin of life
left. A revoked token id is remembered, so a late or replayed message can never bring it back.
All methods are thread-safe; ``lookup`` is the hot path and takes one lock, no I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc

from .errors import CapvendError

#: A token with less life than this left (seconds) is not handed out: the request it is for
#: would reach the resource server with a dead token.
DEFAULT_EXPIRY_MARGIN = 1.0


@dataclass(frozen=True)
class Grant:
    """A grant the runtime wants kept fresh: one resource, its scopes, an optional TTL (seconds)."""

    resource: str
    scopes: tuple[str, ...]
    ttl: float | None = None

    def __init__(self, resource: str, scopes: Iterable[str], ttl: float | None = None) -> None:
        scopes = tuple(scopes)
        if not resource:
            raise ValueError("grant resource must not be empty")
        if not scopes:
            raise ValueError(f"grant {resource!r} needs at least one scope")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"grant {resource!r}: ttl must be positive seconds")
        object.__setattr__(self, "resource", resource)
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "ttl", ttl)


@dataclass(frozen=True)
class HeldToken:
    """A token held in memory. ``access_token`` is left out of repr so logs never show it."""

    token_id: str
    access_token: str = field(repr=False)
    resource: str
    scopes: frozenset[str]
    #: Seconds since the epoch.
    issued_at: float
    #: Seconds since the epoch.
    expires_at: float


class TokenCache:
    """Newest token per grant, revoked ids, stopped grants and the terminal error, behind one lock."""

    def __init__(
        self,
        grants: Sequence[Grant],
        *,
        clock: Callable[[], float] = time.time,
        expiry_margin: float = DEFAULT_EXPIRY_MARGIN,
    ) -> None:
        if not grants:
            raise ValueError("at least one grant is needed")
        seen: set[str] = set()
        for g in grants:
            if g.resource in seen:
                raise ValueError(f"two grants for resource {g.resource!r}")
            seen.add(g.resource)
        if expiry_margin < 0:
            raise ValueError("expiry_margin must be >= 0 seconds")
        self.grants: tuple[Grant, ...] = tuple(grants)
        self._by_resource = {g.resource: g for g in grants}
        self._clock = clock
        self._margin = expiry_margin
        self._held: dict[str, HeldToken] = {}
        self._revoked_ids: set[str] = set()
        self._stopped: dict[str, str] = {}
        self._terminal: CapvendError | None = None
        #: Every access token this cache ever held, for exact-match scrubbing.
        self._ever_held: set[str] = set()
        self.changed = threading.Condition(threading.Lock())

    # -- reads ---------------------------------------------------------------------------

    def lookup(self, resource: str, scopes: Iterable[str] | None = None) -> HeldToken | None:
        """The usable token for ``resource``, None when waiting may bring one.

        Raises CapvendError when none can come: the manager stopped (its terminal error), the
        resource or scopes are not among the grants, or the grant was revoked.
        """
        with self.changed:
            return self._lookup_locked(resource, scopes)

    def _lookup_locked(self, resource: str, scopes: Iterable[str] | None) -> HeldToken | None:
        if self._terminal is not None:
            raise self._terminal
        grant = self._by_resource.get(resource)
        if grant is None:
            raise CapvendError(
                f"resource {resource!r} is not among this manager's grants",
                reason="RESOURCE_NOT_GRANTED",
                code=grpc.StatusCode.PERMISSION_DENIED,
                metadata={"resource": resource},
            )
        held = self._held.get(resource)
        if scopes is not None:
            wanted = frozenset(scopes)
            missing = sorted(wanted.difference(grant.scopes))
            if missing:
                raise CapvendError(
                    f"scope {missing[0]!r} is not granted on {resource!r}",
                    reason="SCOPE_NOT_GRANTED",
                    code=grpc.StatusCode.PERMISSION_DENIED,
                    metadata={"resource": resource, "scope": missing[0]},
                )
            if held is not None and not wanted.issubset(held.scopes):
                held = None
        stopped = self._stopped.get(resource)
        if stopped is not None:
            raise CapvendError(
                f"the grant for {resource!r} was revoked: {stopped}",
                reason="GRANT_REVOKED",
                code=grpc.StatusCode.PERMISSION_DENIED,
                metadata={"resource": resource},
            )
        if held is None or held.expires_at - self._margin <= self._clock():
            return None
        return held

    def wait(self, resource: str, scopes: Iterable[str] | None, timeout: float) -> HeldToken:
        """Like ``lookup``, but blocks up to ``timeout`` seconds for a usable token."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                held = self._lookup_locked(resource, scopes)
                if held is not None:
                    return held
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CapvendError(
                        f"no valid token for {resource!r} arrived within {timeout:g} s",
                        code=grpc.StatusCode.DEADLINE_EXCEEDED,
                        retryable=True,
                        metadata={"resource": resource},
                    )
                # Wake at the timeout, or when a held token crosses its margin, whichever first.
                self.changed.wait(left)

    def token_id(self, resource: str) -> str | None:
        """The id of the token held for ``resource`` now, usable or not."""
        with self.changed:
            held = self._held.get(resource)
            return held.token_id if held else None

    def held(self) -> dict[str, HeldToken]:
        """A copy of the tokens held now, by resource."""
        with self.changed:
            return dict(self._held)

    def secrets(self) -> frozenset[str]:
        """Every access token this cache has held: exact strings to scrub from tool output."""
        with self.changed:
            return frozenset(self._ever_held)

    @property
    def terminal(self) -> CapvendError | None:
        """The error that stopped the manager, or None while it runs."""
        with self.changed:
            return self._terminal

    # -- writes (from the stream) --------------------------------------------------------

    def put(self, grant_index: int, token: HeldToken) -> Grant | None:
        """Holds ``token`` for grant ``grant_index``; None (and nothing held) when it must not be used."""
        with self.changed:
            if self._terminal is not None or not 0 <= grant_index < len(self.grants):
                return None
            grant = self.grants[grant_index]
            if token.token_id in self._revoked_ids or grant.resource in self._stopped:
                return None
            self._held[grant.resource] = token
            self._ever_held.add(token.access_token)
            self.changed.notify_all()
            return grant

    def revoke(self, token_ids: Iterable[str], grant_indexes: Iterable[int], reason: str) -> tuple[str, ...]:
        """Drops revoked tokens and stops revoked grants; returns the resources stopped."""
        with self.changed:
            ids = set(token_ids)
            self._revoked_ids.update(ids)
            for resource, held in list(self._held.items()):
                if held.token_id in ids:
                    del self._held[resource]
            stopped: list[str] = []
            for i in grant_indexes:
                if 0 <= i < len(self.grants):
                    resource = self.grants[i].resource
                    self._held.pop(resource, None)
                    if resource not in self._stopped:
                        self._stopped[resource] = reason or "revoked"
                    stopped.append(resource)
            self.changed.notify_all()
            return tuple(stopped)

    def discard_held(self) -> None:
        """Drops every held token (revocations and stopped grants are kept)."""
        with self.changed:
            self._held.clear()
            self.changed.notify_all()

    def is_revoked(self, token_id: str) -> bool:
        """True when ``token_id`` was named by a revocation."""
        with self.changed:
            return token_id in self._revoked_ids

    def finish(self, error: CapvendError) -> bool:
        """Stops for good with ``error``: every token is dropped. False when already stopped."""
        with self.changed:
            if self._terminal is not None:
                return False
            self._terminal = error
            self._held.clear()
            self.changed.notify_all()
            return True

    def poke(self) -> None:
        """Wakes waiters (e.g. after a clock change in tests)."""
        with self.changed:
            self.changed.notify_all()
