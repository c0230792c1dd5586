"""What injectors need from a credential manager: a token for a resource, from memory."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol


class TokenSource(Protocol):
    """A source of access tokens (CredentialManager)."""

    def get_token(self, resource: str, scopes: Sequence[str] | None = None) -> str: ...

    def known_secrets(self) -> frozenset[str]: ...


class AsyncTokenSource(Protocol):
    """An asyncio source of access tokens (AsyncCredentialManager)."""

    def get_token(self, resource: str, scopes: Sequence[str] | None = None) -> Awaitable[str]: ...

    def known_secrets(self) -> frozenset[str]: ...
