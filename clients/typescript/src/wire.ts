import { create } from "@bufbuild/protobuf";
import { WatchSessionRequestSchema, type WatchSessionRequest, type WatchSessionResponse } from "./gen/capvend/v1/vending_pb.js";
import type { ManagedGrant } from "./credential-manager.js";

/** The WatchSession request for the grants at `live` (indexes into `grants`), resuming from `resumeToken`. */
export function watchRequest(grants: readonly ManagedGrant[], live: readonly number[], resumeToken: string | undefined): WatchSessionRequest {
  return create(WatchSessionRequestSchema, {
    grants: live.map((i) => {
      const g = grants[i]!;
      return { resource: g.resource, scopes: [...g.scopes], ...(g.ttlSeconds !== undefined && { ttl: { seconds: BigInt(g.ttlSeconds), nanos: 0 } }) };
    }),
    resumeToken: resumeToken ?? "",
  });
}

/** The stream position after `m`: the opaque resume token to hand back on reconnect. */
export function resumeTokenOf(m: WatchSessionResponse): string | undefined {
  return m.resumeToken === "" ? undefined : m.resumeToken;
}
