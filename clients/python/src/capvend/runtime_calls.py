"""One-off calls a runtime makes with its session credential, outside the stream."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from ._rpc import vending_stub
from .channels import bearer, open_channel, parse_endpoint
from .errors import error_from_rpc
from .token_cache import HeldToken
from .v1 import vending_pb2 as pb
from .watch_state import duration_from_seconds, held_token

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
    return held_token(res.token)
