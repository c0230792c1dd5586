"""Typed views of the generated ``VendingServiceStub`` (grpc's generated stubs carry no types)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

import grpc

from .v1 import vending_pb2 as pb
from .v1 import vending_pb2_grpc

if TYPE_CHECKING:
    import grpc.aio


class VendingStub(Protocol):
    """``capvend.v1.VendingService`` on a sync channel."""

    StartSession: grpc.UnaryUnaryMultiCallable[pb.StartSessionRequest, pb.StartSessionResponse]
    IssueToken: grpc.UnaryUnaryMultiCallable[pb.IssueTokenRequest, pb.IssueTokenResponse]
    WatchSession: grpc.UnaryStreamMultiCallable[pb.WatchSessionRequest, pb.WatchSessionResponse]
    Revoke: grpc.UnaryUnaryMultiCallable[pb.RevokeRequest, pb.RevokeResponse]
    EndSession: grpc.UnaryUnaryMultiCallable[pb.EndSessionRequest, pb.EndSessionResponse]
    Introspect: grpc.UnaryUnaryMultiCallable[pb.IntrospectRequest, pb.IntrospectResponse]


class AioVendingStub(Protocol):
    """``capvend.v1.VendingService`` on an asyncio channel."""

    StartSession: grpc.aio.UnaryUnaryMultiCallable[pb.StartSessionRequest, pb.StartSessionResponse]
    IssueToken: grpc.aio.UnaryUnaryMultiCallable[pb.IssueTokenRequest, pb.IssueTokenResponse]
    WatchSession: grpc.aio.UnaryStreamMultiCallable[pb.WatchSessionRequest, pb.WatchSessionResponse]
    Revoke: grpc.aio.UnaryUnaryMultiCallable[pb.RevokeRequest, pb.RevokeResponse]
    EndSession: grpc.aio.UnaryUnaryMultiCallable[pb.EndSessionRequest, pb.EndSessionResponse]
    Introspect: grpc.aio.UnaryUnaryMultiCallable[pb.IntrospectRequest, pb.IntrospectResponse]


def vending_stub(channel: grpc.Channel) -> VendingStub:
    """The generated stub on a sync channel, typed."""
    return cast(VendingStub, vending_pb2_grpc.VendingServiceStub(channel))


def aio_vending_stub(channel: grpc.aio.Channel) -> AioVendingStub:
    """The generated stub on an asyncio channel, typed."""
    return cast(AioVendingStub, vending_pb2_grpc.VendingServiceStub(channel))
