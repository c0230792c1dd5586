"""An ``httpx.Auth`` that sends the current capvend token for one resource, sync or async.

Needs the optional ``httpx`` package (``pip install capvend[httpx]``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Generator, Sequence

import httpx

from .token_source import AsyncTokenSource, TokenSource


class CapvendHttpxAuth(httpx.Auth):
    """Sets ``Authorization: Bearer <token for resource>`` on each request, from memory.

    Works with ``httpx.Client`` (a CredentialManager) and ``httpx.AsyncClient`` (either
    manager). On a 401, when the manager now holds a different token, the request is sent
    once more with it.
    """

    def __init__(self, source: TokenSource | AsyncTokenSource, resource: str, scopes: Sequence[str] | None = None) -> None:
        self._source = source
        self._resource = resource
        self._scopes = None if scopes is None else tuple(scopes)

    def _sync_token(self) -> str:
        token = self._source.get_token(self._resource, self._scopes)
        if inspect.isawaitable(token):
            close = getattr(token, "close", None)
            if callable(close):
                close()
            raise TypeError("an AsyncCredentialManager needs httpx.AsyncClient")
        return token

    async def _async_token(self) -> str:
        token = self._source.get_token(self._resource, self._scopes)
        if inspect.isawaitable(token):
            return await token
        return token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._sync_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self._sync_token()
            if fresh != token:
                request.headers["Authorization"] = f"Bearer {fresh}"
                yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._async_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = await self._async_token()
            if fresh != token:
                request.headers["Authorization"] = f"Bearer {fresh}"
                yield request

    def __repr__(self) -> str:
        return f"CapvendHttpxAuth(resource={self._resource!r})"
