"""The tool decorator: the tool gets an authorized client, never the token, and nothing it
returns or raises carries a token."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from capvend import CredentialManager, Orchestrator, authorized_tool
from capvend.scrub import REDACTED
from conftest import SCENARIO_GRANTS
from http_echo import AsyncFakeSource, EchoServer, FakeSource
from processes import CapvendServer

pytest.importorskip("httpx")
import httpx  # noqa: E402

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyOmFsaWNlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    s = EchoServer()
    yield s
    s.close()


def make_tool(source: Any, url: str) -> Any:
    @authorized_tool(source, "crm")
    def find_contact(http: httpx.Client, name: str, limit: int = 5) -> dict[str, Any]:
        """Finds a CRM contact by name."""
        r = http.get(url, params={"q": name, "limit": limit})
        data: dict[str, Any] = r.json()
        return {"echo": data, "headers": dict(r.request.headers)}

    return find_contact


class Contact(typing.NamedTuple):
    name: str


def test_the_tool_keeps_its_name_docstring_and_own_arguments() -> None:
    tool = make_tool(FakeSource(TOKEN), "http://127.0.0.1:9")
    assert tool.__name__ == "find_contact"
    assert tool.__doc__ == "Finds a CRM contact by name."
    sig = inspect.signature(tool)
    assert list(sig.parameters) == ["name", "limit"]
    assert sig.parameters["limit"].default == 5
    assert typing.get_type_hints(tool) == {"name": str, "limit": int, "return": dict[str, Any]}


def test_annotations_naming_the_tools_own_types_resolve() -> None:
    # This module uses `from __future__ import annotations`: the hints are strings naming
    # types of this module, which frameworks must still be able to resolve.
    @authorized_tool(FakeSource(TOKEN), "crm")
    def save(http: httpx.Client, contact: Contact) -> Contact:
        """Saves a contact."""
        return contact

    assert typing.get_type_hints(save) == {"contact": Contact, "return": Contact}
    assert inspect.signature(save).parameters["contact"].annotation is Contact


def test_the_request_carries_the_token_but_the_result_does_not(echo: EchoServer) -> None:
    result = make_tool(FakeSource(TOKEN), echo.url)("alice")
    assert echo.seen == [f"Bearer {TOKEN}"]
    assert TOKEN not in repr(result)
    assert result["echo"]["authorization"] == f"Bearer {REDACTED}"


def test_an_exception_from_the_tool_is_scrubbed_and_keeps_its_type(echo: EchoServer) -> None:
    @authorized_tool(FakeSource(TOKEN), "crm")
    def leaky(http: httpx.Client) -> str:
        """Raises with the header in the message."""
        sent = http.get(echo.url).request.headers["authorization"]
        raise PermissionError(f"upstream refused {sent}")

    with pytest.raises(PermissionError) as e:
        leaky()
    assert TOKEN not in str(e.value) and REDACTED in str(e.value)
    assert e.value.__cause__ is None and e.value.__context__ is None


def test_known_tokens_are_scrubbed_even_without_a_token_shape(echo: EchoServer) -> None:
    opaque = "opaque-secret-value"

    @authorized_tool(FakeSource(opaque), "crm")
    def tell(http: httpx.Client) -> str:
        """Returns the header it sent."""
        return str(http.get(echo.url).request.headers["authorization"])

    assert tell() == f"Bearer {REDACTED}"


def test_requests_client(echo: EchoServer) -> None:
    pytest.importorskip("requests")
    import requests

    @authorized_tool(FakeSource(TOKEN), "crm", client="requests")
    def fetch(http: requests.Session, q: str) -> str:
        """Fetches with requests."""
        text: str = http.get(echo.url, params={"q": q}).text
        return text

    assert TOKEN not in fetch("x") and echo.seen == [f"Bearer {TOKEN}"]


@pytest.mark.asyncio
async def test_an_async_tool_gets_an_async_client(echo: EchoServer) -> None:
    @authorized_tool(AsyncFakeSource(TOKEN), "crm")
    async def find(http: httpx.AsyncClient, name: str) -> str:
        """Finds asynchronously."""
        text: str = (await http.get(echo.url, params={"q": name})).text
        return text

    assert inspect.iscoroutinefunction(find) and list(inspect.signature(find).parameters) == ["name"]
    out = await find("bob")
    assert TOKEN not in out and echo.seen == [f"Bearer {TOKEN}"]


def test_a_tool_without_a_client_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match="first parameter"):

        @authorized_tool(FakeSource(TOKEN), "crm")  # type: ignore[arg-type]  # refused by mypy too
        def nothing() -> None:
            """No client."""


def test_with_a_real_manager(server: CapvendServer, orchestrator: Orchestrator, echo: EchoServer) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    with CredentialManager(server.endpoint, session.session_credential, SCENARIO_GRANTS) as m:
        result = make_tool(m, echo.url)("carol")
        sent = echo.seen[-1].removeprefix("Bearer ")
        assert sent == m.get_token("crm") or sent in m.known_secrets()
        assert sent.count(".") == 2 and sent not in repr(result)
