"""google.rpc.Status and ErrorInfo built in a private descriptor pool, to encode test inputs.

The package decodes them from the wire by hand (no googleapis-common-protos); these classes,
made by protobuf itself from the same field definitions, check that decoding against real
encodings.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def _build() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
    f = descriptor_pb2.FileDescriptorProto(name="test/google_rpc.proto", package="google.rpc", syntax="proto3")
    f.dependency.append("google/protobuf/any.proto")
    status = f.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".google.protobuf.Any")
    info = f.message_type.add(name="ErrorInfo")
    info.field.add(name="reason", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    info.field.add(name="domain", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry = info.nested_type.add(name="MetadataEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.options.map_entry = True
    info.field.add(name="metadata", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".google.rpc.ErrorInfo.MetadataEntry")
    pool.Add(f)
    status_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    info_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))
    return status_cls, info_cls


Status, ErrorInfo = _build()


def status_bytes(code: int, message: str, reason: str = "", domain: str = "capvend.dev", metadata: dict[str, str] | None = None, extra_any: bool = True) -> bytes:
    """A serialized google.rpc.Status with an unrelated Any first and then an ErrorInfo."""
    s = Status(code=code, message=message)
    if extra_any:
        other = s.details.add()
        other.type_url = "type.googleapis.com/google.rpc.RetryInfo"
        other.value = b"\x0a\x02\x08\x05"
    if reason:
        info = ErrorInfo(reason=reason, domain=domain)
        for k, v in (metadata or {}).items():
            info.metadata[k] = v
        d = s.details.add()
        d.Pack(info)
    data: bytes = s.SerializeToString()
    return data
