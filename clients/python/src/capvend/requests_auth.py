"""A ``requests`` auth object that sends the current capvend token for one resource.

Needs the optional ``requests`` package (``pip install capvend[requests]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests
import requests.auth

from .token_source import TokenSource


class CapvendAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <token for resource>`` on each request, from memory.

    When the response is 401 and the manager now holds a different token (a renewal or a
    replacement arrived meanwhile), the request is sent once more with it. A revoked grant or
    ended session raises CapvendError before anything is sent.
    """

    def __init__(self, source: TokenSource, resource: str, scopes: Sequence[str] | None = None) -> None:
        self._source = source
        self._resource = resource
        self._scopes = None if scopes is None else tuple(scopes)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._source.get_token(self._resource, self._scopes)
        r.headers["Authorization"] = f"Bearer {token}"
        r.register_hook("response", self._retry_on_401)  # type: ignore[no-untyped-call]
        return r

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or getattr(response.request, "_capvend_retried", False):
            return response
        sent = (response.request.headers.get("Authorization") or "").removeprefix("Bearer ")
        fresh = self._source.get_token(self._resource, self._scopes)
        if fresh == sent or response.request.body is not None and not isinstance(response.request.body, (str, bytes)):
            return response  # nothing newer to try, or a streamed body that cannot be replayed
        response.content  # noqa: B018 - read and release the connection before reusing it
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {fresh}"
        setattr(retry, "_capvend_retried", True)
        connection = getattr(response, "connection", None)
        if connection is None:
            return response
        again: requests.Response = connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again

    def __repr__(self) -> str:
        return f"CapvendAuth(resource={self._resource!r})"
