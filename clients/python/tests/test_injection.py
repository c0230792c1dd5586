"""requests and httpx injection: the current token goes out, a 401 is retried once with a newer one.

Each library is optional; a test is skipped only when its library is not installed (CI installs both).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from http_echo import AsyncFakeSource, EchoServer, FakeSource


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    s = EchoServer()
    yield s
    s.close()


def test_requests_auth_sends_the_token_and_retries_a_401_once_with_a_newer_one(echo: EchoServer) -> None:
    requests = pytest.importorskip("requests")
    from capvend.requests_auth import CapvendAuth

    source = FakeSource("old-token-0001")
    with requests.Session() as http:
        r = http.get(echo.url, auth=CapvendAuth(source, "crm"))
        assert r.status_code == 200 and r.json()["authorization"] == "Bearer old-token-0001"
        echo.refuse.add("old-token-0001")
        source.calls, source.after_first = 0, "new-token-0002"
        r = http.post(echo.url, data=b"payload", auth=CapvendAuth(source, "crm"))
        assert r.status_code == 200 and r.json() == {"authorization": "Bearer new-token-0002", "body": "payload"}
        assert [h.status_code for h in r.history] == [401]
        # No newer token: the 401 is returned as it is, sent once.
        source.calls, source.after_first = 0, None
        before = len(echo.seen)
        assert http.get(echo.url, auth=CapvendAuth(source, "crm")).status_code == 401
        assert len(echo.seen) == before + 1
    assert "old-token" not in repr(CapvendAuth(source, "crm"))


def test_httpx_auth_sync(echo: EchoServer) -> None:
    httpx = pytest.importorskip("httpx")
    from capvend.httpx_auth import CapvendHttpxAuth

    source = FakeSource("old-token-0001")
    with httpx.Client(auth=CapvendHttpxAuth(source, "crm")) as http:
        assert http.get(echo.url).json()["authorization"] == "Bearer old-token-0001"
        echo.refuse.add("old-token-0001")
        source.calls, source.after_first = 0, "new-token-0002"
        r = http.get(echo.url)
        assert r.status_code == 200 and r.json()["authorization"] == "Bearer new-token-0002"
        source.calls, source.after_first = 0, None
        assert http.get(echo.url).status_code == 401


@pytest.mark.asyncio
async def test_httpx_auth_async_with_an_async_source(echo: EchoServer) -> None:
    httpx = pytest.importorskip("httpx")
    from capvend.httpx_auth import CapvendHttpxAuth

    source = AsyncFakeSource("old-token-0001")
    async with httpx.AsyncClient(auth=CapvendHttpxAuth(source, "crm")) as http:
        assert (await http.get(echo.url)).json()["authorization"] == "Bearer old-token-0001"
        echo.refuse.add("old-token-0001")
        source.calls, source.after_first = 0, "new-token-0002"
        assert (await http.get(echo.url)).json()["authorization"] == "Bearer new-token-0002"


def test_an_async_source_on_a_sync_client_is_refused_clearly(echo: EchoServer) -> None:
    httpx = pytest.importorskip("httpx")
    from capvend.httpx_auth import CapvendHttpxAuth

    with httpx.Client(auth=CapvendHttpxAuth(AsyncFakeSource("t-000000001"), "crm")) as http:
        with pytest.raises(TypeError, match="AsyncClient"):
            http.get(echo.url)
