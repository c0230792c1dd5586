"""protoc plugin that runs grpcio-tools' gRPC Python generator.

grpcio-tools builds that generator into its own protoc (--grpc_python_out) and ships no
standalone plugin, which buf needs. This plugin takes buf's CodeGeneratorRequest, hands
its files to grpcio-tools' protoc as a descriptor set, and returns what it wrote.
"""
import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = os.path.join(tmp, "descriptors.pb")
        with open(descriptors, "wb") as f:
            f.write(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        opt = f"--grpc_python_opt={request.parameter}" if request.parameter else None
        args = ["protoc", f"--descriptor_set_in={descriptors}", f"--grpc_python_out={out}"]
        if opt:
            args.append(opt)
        rc = protoc.main(args + list(request.file_to_generate))
        if rc != 0:
            response.error = f"grpcio-tools protoc exited {rc}"
        else:
            for root, _, files in os.walk(out):
                for name in sorted(files):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        response.file.add(name=os.path.relpath(path, out), content=f.read())
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
