"""A scripted VendingService in process, for client behaviour a single real server cannot show.

Each WatchSession call takes the next scripted behaviour: refuse with a gRPC code and a capvend
ErrorInfo reason, or serve messages and then stay open (silent) until the client goes away.
The real server's behaviour is covered by the tests that start capvend processes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from capvend.status_details import STATUS_DETAILS_KEY
from capvend.v1 import vending_pb2 as pb
from capvend.v1 import vending_pb2_grpc
from rpc_status_messages import status_bytes


@dataclass
class Refuse:
    code: grpc.StatusCode
    reason: str


@dataclass
class Serve:
    messages: list[pb.WatchSessionResponse] = field(default_factory=list)


def token_message(grant_index: int, tid: str, resource: str, ttl: float = 600.0, resume: str = "") -> pb.WatchSessionResponse:
    import time

    now = time.time()
    m = pb.WatchSessionResponse(resume_token=resume)
    m.token_issued.grant_index = grant_index
    t = m.token_issued.token
    t.token_id, t.access_token, t.resource = tid, f"jwt-{tid}", resource
    t.scopes.extend(["read"])
    t.issued_at.seconds = int(now)
    t.expires_at.seconds = int(now + ttl)
    return m


class FakeVending(vending_pb2_grpc.VendingServiceServicer):
    def __init__(self, script: list[Refuse | Serve]) -> None:
        self.script = list(script)
        self.requests: "queue.Queue[pb.WatchSessionRequest]" = queue.Queue()
        self._lock = threading.Lock()

    def WatchSession(self, request: pb.WatchSessionRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchSessionResponse]:  # noqa: N802
        self.requests.put(request)
        with self._lock:
            step = self.script.pop(0) if self.script else Serve()
        if isinstance(step, Refuse):
            context.set_trailing_metadata(((STATUS_DETAILS_KEY, status_bytes(step.code.value[0], step.reason, step.reason)),))
            context.abort(step.code, f"refused: {step.reason}")
        assert isinstance(step, Serve)
        yield from step.messages
        done = threading.Event()
        context.add_callback(done.set)
        done.wait(60)


class FakeServer:
    def __init__(self, script: list[Refuse | Serve]) -> None:
        self.service = FakeVending(script)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        vending_pb2_grpc.add_VendingServiceServicer_to_server(self.service, self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=None).wait()
