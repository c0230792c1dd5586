import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A request message from its protobuf bytes, for the front ends that decode requests
 * themselves (the gRPC front, the lean Connect path). Bytes that are not the method's message
 * are the caller's bad input: INVALID_ARGUMENT, with the message connect-es gives
 * ("parse binary: …").
 */
export function decodeRequestMessage<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.InvalidArgument);
  }
}
