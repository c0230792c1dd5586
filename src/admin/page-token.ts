import { createHash } from "node:crypto";
import { capvendError } from "../errors.js";

/** What a page token is bound to: AIP-158 says a token is refused with other filters. */
export interface PageFilter {
  agentId?: string;
  userId?: string;
  resource?: string;
  includeEnded: boolean;
}

function fingerprint(f: PageFilter): string {
  return createHash("sha256").update(JSON.stringify([f.agentId ?? null, f.userId ?? null, f.resource ?? null, f.includeEnded])).digest("base64url").slice(0, 16);
}

/** An opaque token for the page after the session `afterId`, under these filters. */
export function encodePageToken(afterId: string, filter: PageFilter): string {
  return Buffer.from(JSON.stringify({ a: afterId, f: fingerprint(filter) })).toString("base64url");
}

/** The session id a page token continues after; INVALID_ARGUMENT for a malformed token or one of other filters. */
export function decodePageToken(token: string, filter: PageFilter): string {
  let parsed: { a?: unknown; f?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { a?: unknown; f?: unknown };
  } catch {
    throw capvendError("INVALID_ARGUMENT", "page_token: not a page token from ListSessions", { field: "page_token" });
  }
  if (typeof parsed?.a !== "string" || typeof parsed.f !== "string") {
    throw capvendError("INVALID_ARGUMENT", "page_token: not a page token from ListSessions", { field: "page_token" });
  }
  if (parsed.f !== fingerprint(filter)) {
    throw capvendError("INVALID_ARGUMENT", "page_token: was issued for other filters; keep the filters of the first page", { field: "page_token" });
  }
  return parsed.a;
}
