"""A decorator that gives an agent tool an authorized HTTP client, never the token.

The tool is a plain function with a docstring (the shape LangChain's ``@tool``, LlamaIndex's
``FunctionTool`` and the OpenAI Agents SDK's ``function_tool`` read). Its first parameter
receives an HTTP client whose requests carry the current token for the resource; the
decorated function's signature, name and docstring are the tool's own minus that parameter,
so a framework shows the LLM only the real arguments. Token-shaped strings (and every token
the manager has held) are scrubbed from what the tool returns and from any exception it raises.

    @authorized_tool(manager, "crm")
    def find_contact(http: httpx.Client, name: str) -> str:
        \"\"\"Finds a CRM contact by name.\"\"\"
        return http.get("https://crm.example/contacts", params={"q": name}).text

Async tools (``async def``) get an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from .scrub import scrub_exception, scrub_value
from .token_source import AsyncTokenSource, TokenSource

P = ParamSpec("P")
R = TypeVar("R")

ClientKind = Literal["httpx", "requests"]

_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    # Building a default context reads the CA bundle (milliseconds); one per process is enough.
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    # Resolve string annotations (``from __future__ import annotations``) in the tool's own
    # module now: the wrapper lives in this module, where the tool's names do not resolve.
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - a forward reference that cannot resolve yet
        return inspect.signature(fn)


def _strip_first_parameter(fn: Callable[..., Any]) -> inspect.Signature:
    sig = _signature(fn)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise TypeError(f"{fn.__qualname__}: the first parameter must take the HTTP client")
    return sig.replace(parameters=params[1:])


def authorized_tool(
    source: TokenSource | AsyncTokenSource,
    resource: str,
    scopes: Sequence[str] | None = None,
    *,
    client: ClientKind = "httpx",
    timeout: float = 30.0,
) -> Callable[[Callable[Concatenate[Any, P], R]], Callable[P, R]]:
    """Wraps a tool function so it runs with an HTTP client authorized for ``resource``.

    Args:
        source: a CredentialManager (or AsyncCredentialManager for ``async def`` tools).
        resource: the grant whose token the client sends.
        scopes: scopes the token must carry; any token of the grant when None.
        client: ``"httpx"`` (default; ``httpx.Client`` / ``httpx.AsyncClient``) or
            ``"requests"`` (a ``requests.Session``; sync tools only).
        timeout: the HTTP client's timeout, seconds.
    """

    def decorate(fn: Callable[Concatenate[Any, P], R]) -> Callable[P, R]:
        signature = _strip_first_parameter(fn)
        first = next(iter(inspect.signature(fn).parameters))
        annotations = {name: p.annotation for name, p in signature.parameters.items() if p.annotation is not inspect.Parameter.empty}
        if signature.return_annotation is not inspect.Signature.empty:
            annotations["return"] = signature.return_annotation
        annotations.pop(first, None)

        def known() -> frozenset[str]:
            return source.known_secrets()

        if inspect.iscoroutinefunction(fn):
            if client != "httpx":
                raise TypeError("async tools use httpx.AsyncClient: pass client='httpx'")

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                import httpx

                from .httpx_auth import CapvendHttpxAuth

                failure: BaseException | None = None
                try:
                    auth = CapvendHttpxAuth(source, resource, scopes)
                    async with httpx.AsyncClient(auth=auth, timeout=timeout, verify=_shared_ssl_context()) as http:
                        result = await fn(http, *args, **kwargs)
                except Exception as e:  # noqa: BLE001 - every error is scrubbed, then raised
                    failure = scrub_exception(e, known())
                if failure is not None:
                    # Raised outside the handler, so the original (with its token) is not its context.
                    raise failure
                return scrub_value(result, known())

            wrapper: Callable[..., Any] = run_async
        else:

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                failure: BaseException | None = None
                try:
                    with _sync_client(source, resource, scopes, client, timeout) as http:
                        result = fn(http, *args, **kwargs)
                except Exception as e:  # noqa: BLE001 - every error is scrubbed, then raised
                    failure = scrub_exception(e, known())
                if failure is not None:
                    # Raised outside the handler, so the original (with its token) is not its context.
                    raise failure
                return scrub_value(result, known())

            wrapper = run
        # The framework must see the tool's own arguments, not the client: drop __wrapped__
        # (inspect would follow it back to the full signature) and state the signature.
        del wrapper.__wrapped__  # type: ignore[attr-defined]
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = annotations
        return wrapper

    return decorate


def _sync_client(
    source: TokenSource | AsyncTokenSource, resource: str, scopes: Sequence[str] | None, kind: ClientKind, timeout: float
) -> Any:
    if kind == "requests":
        import requests

        from .requests_auth import CapvendAuth

        session = requests.Session()
        session.auth = CapvendAuth(source, resource, scopes)  # type: ignore[arg-type]
        return session
    import httpx

    from .httpx_auth import CapvendHttpxAuth

    return httpx.Client(auth=CapvendHttpxAuth(source, resource, scopes), timeout=timeout, verify=_shared_ssl_context())
