"""What a credential manager reports about its session. Events name tokens by id, never carry one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import CapvendError


@dataclass(frozen=True)
class Connected:
    """A stream is open on ``endpoint``; ``resumed`` when it continued from a resume token."""

    endpoint: str
    resumed: bool


@dataclass(frozen=True)
class TokenRenewed:
    """A token arrived for ``resource``: the first one (``replaces_token_id`` empty) or a renewal."""

    resource: str
    token_id: str
    #: Expiry, seconds since the epoch.
    expires_at: float
    replaces_token_id: str


@dataclass(frozen=True)
class TokensRevoked:
    """Tokens were revoked; ``resources`` are the grants that will not be renewed any more."""

    token_ids: tuple[str, ...]
    resources: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class SessionEnded:
    """The session ended; the manager has stopped."""

    reason: str


@dataclass(frozen=True)
class Disconnected:
    """The stream on ``endpoint`` dropped; the manager reconnects after ``retry_in`` seconds."""

    endpoint: str
    error: CapvendError | None
    retry_in: float


@dataclass(frozen=True)
class Failed:
    """The manager stopped for good after a fatal refusal (credential refused, session gone)."""

    error: CapvendError


#: Any event a credential manager reports.
Event = Union[Connected, TokenRenewed, TokensRevoked, SessionEnded, Disconnected, Failed]
