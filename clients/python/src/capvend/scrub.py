"""Removes token-shaped strings from text and values before they reach an LLM, a log or a user.

Shapes caught: a compact JWS/JWT (three base64url parts whose header starts ``eyJ``, i.e. a JSON
object), a capvend session credential (``ses_<id>.<secret>``), and the value of a ``Bearer``
authorization. Values this process knows to be secret (the tokens a credential manager has
held) are removed by exact match too, whatever their shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

#: Replacement for a value that looks like a token.
REDACTED = "[REDACTED]"

_JWT = r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
_SESSION_CREDENTIAL = r"ses_[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{20,}"
_BEARER = r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
_TOKEN_SHAPED = re.compile(f"{_JWT}|{_SESSION_CREDENTIAL}|{_BEARER}")

T = TypeVar("T")


def scrub_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every token-shaped substring (and every ``known`` secret) replaced by ``[REDACTED]``."""
    for secret in known:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if "eyJ" not in text and "ses_" not in text and "earer" not in text and "EARER" not in text:
        return text
    return _TOKEN_SHAPED.sub(_replace, text)


def _replace(m: re.Match[str]) -> str:
    s = m.group(0)
    # Keep the word "Bearer" so the text still reads as what it was.
    if s[:6].lower() == "bearer":
        return s[:6] + " " + REDACTED
    return REDACTED


def contains_token(text: str) -> bool:
    """True when ``text`` holds a token-shaped substring."""
    return _TOKEN_SHAPED.search(text) is not None


def scrub_value(value: T, known: Iterable[str] = ()) -> T:
    """Scrubs strings inside ``value``: str, bytes, and (recursively) dicts, lists, tuples and sets.

    Other objects are returned as they are: a tool that returns its own types is responsible
    for them. Containers are copied, never changed in place.
    """
    secrets = tuple(known)
    return _scrub(value, secrets, 0)  # type: ignore[no-any-return]


_MAX_DEPTH = 64


def _scrub(value: Any, known: tuple[str, ...], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        return scrub_text(value, known)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", errors="surrogateescape")
        cleaned = scrub_text(text, known)
        if cleaned == text:
            return value
        return cleaned.encode("utf-8", errors="surrogateescape")
    if isinstance(value, dict):
        items = {_scrub(k, known, depth + 1): _scrub(v, known, depth + 1) for k, v in value.items()}
        if type(value) is dict:
            return items
        try:
            return type(value)(items)
        except Exception:  # noqa: BLE001 - a dict subclass with its own constructor
            return items
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(_scrub(v, known, depth + 1) for v in value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_scrub(v, known, depth + 1) for v in value)
    return value


def scrub_exception(err: BaseException, known: Iterable[str] = ()) -> BaseException:
    """An exception like ``err`` whose message and args hold no token, without its chain or traceback.

    The same type is kept when it can be rebuilt from scrubbed args; otherwise a RuntimeError
    carries the scrubbed text. The cause, context and traceback are dropped: their frames'
    locals can hold request headers.
    """
    secrets = tuple(known)
    args = tuple(_scrub(a, secrets, 0) for a in err.args)
    clean: BaseException
    try:
        clean = type(err)(*args)
        if scrub_text(str(clean), secrets) != str(clean):
            raise TypeError("still holds a secret")
    except Exception:  # noqa: BLE001 - any constructor may refuse the args
        clean = RuntimeError(f"{type(err).__name__}: {scrub_text(str(err), secrets)}")
    clean.__cause__ = None
    clean.__context__ = None
    clean.__suppress_context__ = True
    return clean.with_traceback(None)
