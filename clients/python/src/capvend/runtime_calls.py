"""One-off calls a runtime makes with its session credential, outside the stream."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from ._rpc import vending_stub
from .channels import bearer, open_channel, parse_endpoint
from .errors import error_from_rpc
from .token_cache import HeldToken
from .v1 import vending_pb2 as pb
from .watch_state import duration_from_seconds

#: Per-call deadline, seconds.
DEFAULT_CALL_TIMEOUT = 10.0


def issue_token(
    endpoint: str,
    session_credential: str,
    resource: str,
    scopes: Sequence[str],
    *,
    ttl: float | None = None,
    timeout: float = DEFAULT_CALL_TIMEOUT,
    channel_credentials: grpc.ChannelCredentials | None = None,
) -> HeldToken:
    """IssueToken: one token for ``resource`` and ``scopes`` (``ttl`` seconds). Raises CapvendError."""
    req = pb.IssueTokenRequest(resource=resource, scopes=list(scopes))
    if ttl is not None:
        req.ttl.CopyFrom(duration_from_seconds(ttl))
    channel = open_channel(parse_endpoint(endpoint), channel_credentials)
    try:
        res = vending_stub(channel).IssueToken(req, timeout=timeout, metadata=bearer(session_credential))
    except grpc.RpcError as e:
        raise error_from_rpc(e) from None
    finally:
        channel.close()
    t = res.token
    return HeldToken(
        token_id=t.token_id,
        access_token=t.access_token,
        resource=t.resource,
        scopes=frozenset(t.scopes),
        issued_at=t.issued_at.seconds + t.issued_at.nanos / 1e9,
        expires_at=t.expires_at.seconds + t.expires_at.nanos / 1e9,
    )
