"""Endpoint strings, channel settings and call metadata shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

#: gRPC channel settings: reconnect quickly after a replica restarts (grpc's own default waits
#: a second first and grows to two minutes), and give each channel its own connections: with
#: grpc's process-wide subchannel pool, a fresh channel to a replica that just came back
#: would inherit another channel's "connection refused" until that one's backoff ends.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
)


@dataclass(frozen=True)
class Endpoint:
    """A capvend replica: a gRPC target (``host:port``) and whether it speaks TLS."""

    target: str
    tls: bool

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.target}"


def parse_endpoint(value: str) -> Endpoint:
    """Reads ``host:port``, ``http://host:port`` (cleartext) or ``https://host:port`` (TLS)."""
    text = value.strip()
    tls = False
    if text.startswith("https://"):
        tls, text = True, text[len("https://") :]
    elif text.startswith("http://"):
        text = text[len("http://") :]
    text = text.rstrip("/")
    if not text or "/" in text or ":" not in text:
        raise ValueError(f"endpoint {value!r} is not host:port, http://host:port or https://host:port")
    return Endpoint(text, tls)


def parse_endpoints(endpoints: str | Sequence[str]) -> tuple[Endpoint, ...]:
    """One endpoint or several; at least one."""
    items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    if not items:
        raise ValueError("at least one endpoint is needed")
    return tuple(parse_endpoint(e) for e in items)


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``credential`` as the bearer."""
    if not credential or any(c.isspace() for c in credential):
        raise ValueError("the credential must be a non-empty string without white space")
    return (("authorization", f"Bearer {credential}"),)


def open_channel(
    endpoint: Endpoint,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, int | str]] = DEFAULT_CHANNEL_OPTIONS,
) -> grpc.Channel:
    """A sync channel to ``endpoint``: TLS when it says https or ``credentials`` are given."""
    if endpoint.tls or credentials is not None:
        return grpc.secure_channel(endpoint.target, credentials or grpc.ssl_channel_credentials(), options=list(options))
    return grpc.insecure_channel(endpoint.target, options=list(options))


def open_aio_channel(
    endpoint: Endpoint,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, int | str]] = DEFAULT_CHANNEL_OPTIONS,
) -> grpc.aio.Channel:
    """An asyncio channel to ``endpoint``: TLS when it says https or ``credentials`` are given."""
    if endpoint.tls or credentials is not None:
        return grpc.aio.secure_channel(endpoint.target, credentials or grpc.ssl_channel_credentials(), options=list(options))
    return grpc.aio.insecure_channel(endpoint.target, options=list(options))
