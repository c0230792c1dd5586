import { constants as h2 } from "node:http2";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { HttpRequest } from "./http-routes.js";

/** The Node request behind a call, so a stuck stream can be reset at the transport. */
export const nodeRequestKey = createContextKey<HttpRequest | undefined>(undefined, { description: "node request" });

/**
 * Resets the HTTP stream of a call whose reader stopped reading. On HTTP/2 the stream is
 * closed with ENHANCE_YOUR_CALM, which gRPC and Connect clients report as
 * RESOURCE_EXHAUSTED (RST_STREAM is not flow-controlled, so it gets through where a
 * status trailer could not). On HTTP/1.1 the only way out is to drop the connection.
 */
export function resetStream(ctx: Pick<HandlerContext, "values">): void {
  const req = ctx.values.get(nodeRequestKey);
  if (!req) return;
  if ("stream" in req && req.stream) req.stream.close(h2.NGHTTP2_ENHANCE_YOUR_CALM);
  else req.socket.destroy();
}
