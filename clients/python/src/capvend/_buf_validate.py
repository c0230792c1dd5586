"""Lets the generated ``capvend.v1`` modules load without the ``protovalidate`` package.

The contract declares its field rules with ``buf.validate`` options, so the generated code
imports ``buf.validate.validate_pb2``. Those rules are enforced by the server; a client only
needs the file to exist in the descriptor pool so the contract's descriptors link. When
``protovalidate`` is installed its real module is used; otherwise an empty stand-in file named
``buf/validate/validate.proto`` is registered (the options stay readable as unknown fields).
A process without ``protovalidate`` cannot import it later, so the two never meet.
"""

from __future__ import annotations

import sys
import types

from google.protobuf import descriptor_pb2, descriptor_pool

_FILE = "buf/validate/validate.proto"


def ensure_buf_validate() -> None:
    """Makes ``import buf.validate.validate_pb2`` succeed. Idempotent."""
    if "buf.validate.validate_pb2" in sys.modules:
        return
    try:
        import buf.validate.validate_pb2  # noqa: F401

        return
    except ImportError:
        pass
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_FILE)
    except KeyError:
        stand_in = descriptor_pb2.FileDescriptorProto(name=_FILE, package="buf.validate", syntax="proto2")
        pool.AddSerializedFile(stand_in.SerializeToString())
    buf = sys.modules.get("buf") or types.ModuleType("buf")
    validate = types.ModuleType("buf.validate")
    validate_pb2 = types.ModuleType("buf.validate.validate_pb2")
    setattr(validate_pb2, "DESCRIPTOR", pool.FindFileByName(_FILE))
    setattr(buf, "__path__", getattr(buf, "__path__", []))
    setattr(validate, "__path__", [])
    setattr(validate, "validate_pb2", validate_pb2)
    setattr(buf, "validate", validate)
    sys.modules.setdefault("buf", buf)
    sys.modules["buf.validate"] = validate
    sys.modules["buf.validate.validate_pb2"] = validate_pb2
