"""Token-shaped strings are scrubbed from text, values and exceptions."""

from __future__ import annotations

from typing import Any, NamedTuple

from capvend.scrub import REDACTED, contains_token, scrub_exception, scrub_text, scrub_value

JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6IngifQ.eyJzdWIiOiJ1c2VyOmFsaWNlIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
CREDENTIAL = "ses_jWOWLa-jkDiRTZxBYED4dg.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def test_a_jwt_a_session_credential_and_a_bearer_value_are_removed() -> None:
    text = f"token={JWT} cred={CREDENTIAL} header=Authorization: Bearer opaque-secret-123456"
    out = scrub_text(text)
    assert JWT not in out and CREDENTIAL not in out and "opaque-secret-123456" not in out
    assert out.count(REDACTED) == 3
    assert "Bearer [REDACTED]" in out
    assert not contains_token(out)


def test_ordinary_text_and_token_ids_are_kept() -> None:
    text = "revoked tok_FgBjwFoYKJc9We8IAaIu1zOq806lwF4LGArSEQ of ses_jWOWLa-jkDiRTZxBYED4dg; the bearer of news"
    assert scrub_text(text) == text


def test_known_secrets_are_removed_whatever_their_shape() -> None:
    assert scrub_text("opaque 0123456789abcdef here", known=["0123456789abcdef"]) == f"opaque {REDACTED} here"


class Pair(NamedTuple):
    name: str
    value: str


def test_values_are_scrubbed_recursively_without_changing_the_input() -> None:
    value: dict[str, Any] = {"headers": {"authorization": f"Bearer {JWT}"}, "items": [JWT, ("x", JWT)], "raw": JWT.encode(), "n": 3, "pair": Pair("a", JWT)}
    out = scrub_value(value)
    assert JWT not in repr(out)
    assert out["n"] == 3 and isinstance(out["items"][1], tuple) and isinstance(out["pair"], Pair)
    assert out["raw"] == REDACTED.encode()
    assert value["items"][0] == JWT  # the input is untouched


def test_an_exception_keeps_its_type_loses_the_token_its_chain_and_traceback() -> None:
    try:
        try:
            raise KeyError(CREDENTIAL)
        except KeyError as inner:
            raise ValueError(f"call failed with {JWT}") from inner
    except ValueError as e:
        clean = scrub_exception(e)
    assert type(clean) is ValueError
    assert JWT not in str(clean)
    assert clean.__cause__ is None and clean.__context__ is None and clean.__traceback__ is None


class Picky(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def test_an_exception_that_cannot_be_rebuilt_becomes_a_runtime_error_with_scrubbed_text() -> None:
    clean = scrub_exception(Picky(401, f"bad token {JWT}"))
    assert isinstance(clean, RuntimeError)
    assert "Picky" in str(clean) and JWT not in str(clean)
