/** Reads capvend's google.rpc.ErrorInfo as a client in any language would: from the standard status details. */
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, type ErrorInfo } from "../../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";

/**
 * The ErrorInfo in a `grpc-status-details-bin` value (a google.rpc.Status, base64 in raw
 * HTTP/2 headers, bytes in grpc-js metadata), or undefined when there is none.
 */
export function errorInfoFromStatusDetails(value: string | Buffer | Uint8Array | undefined): ErrorInfo | undefined {
  if (value === undefined) return undefined;
  const bytes = typeof value === "string" ? Buffer.from(value, "base64") : value;
  const status = fromBinary(StatusSchema, bytes);
  for (const any of status.details) {
    const info = anyUnpack(any, ErrorInfoSchema);
    if (info) return info;
  }
  return undefined;
}
