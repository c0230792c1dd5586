import type { Clock } from "../clock.js";
import { CapvendError, capvendError, invalidArgument } from "../errors.js";
import type { WatchSessionRequest } from "../gen/capvend/v1/vending_pb.js";
import type { RevocationList, SessionRecord } from "../backends/types.js";
import { decodeResumeToken } from "../streams/resume-token.js";
import type { StreamOpening } from "../streams/stream-hub.js";
import type { StreamTokens } from "../streams/stream-tokens.js";
import type { Issuer } from "./issuer.js";
import { tokenMessage } from "./token-message.js";
import { validateGrants } from "./validate.js";

/** How long a resuming stream waits for this replica to catch up with the revocation feed, ms. */
export const RESUME_CATCH_UP_TIMEOUT_MS = 2000;

/** What WatchSession's checks need. */
export interface WatchAdmissionDeps {
  clock: Clock;
  issuer: Pick<Issuer, "authorize">;
  revocations: Pick<RevocationList, "lastSeq" | "catchUp">;
  /** CAPVEND_MAX_TOKEN_TTL, ms: the longest grant TTL, and how long a resume token stays good. */
  maxTokenTtlMs: number;
}

/**
 * Validates and authorizes one WatchSession call, as the other RPCs check theirs: the grants
 * (shape and TTLs), the resume token, and every grant exactly as IssueToken would check it.
 * A refused grant fails the call naming it (`grants[i]`), it is never silently dropped. A
 * resuming stream is the exception for grants a revocation withdrew: the lost stream had
 * stopped them, so the resumed one opens with them stopped and says so (WatchStream.open).
 */
export async function admitWatch(deps: WatchAdmissionDeps, session: SessionRecord, req: WatchSessionRequest): Promise<StreamOpening> {
  const grants = validateGrants("grants", req.grants, deps.maxTokenTtlMs);
  const resumePosition = await resumePositionOf(deps, session, req.resumeToken);
  grants.forEach((g, i) => {
    try {
      deps.issuer.authorize(session, { resource: g.resource, scopes: g.scopes, ttlMs: g.ttlMs });
    } catch (err) {
      if (resumePosition !== undefined && err instanceof CapvendError && err.reason === "GRANT_REVOKED") return;
      if (err instanceof CapvendError) {
        const field = err.subject.field === undefined ? undefined : `grants[${i}].${err.subject.field}`;
        throw capvendError(err.reason, `grants[${i}]: ${err.rawMessage}`, { ...err.subject, field, grantIndex: String(i) }, err.cause);
      }
      throw err;
    }
  });
  return { session, grants, resumePosition };
}

/**
 * The feed position a resume token stands for, once this replica has applied the feed up to
 * it; undefined for a fresh start (no token). Refuses a token that is malformed, of another
 * session or altered (INVALID_ARGUMENT), older than the longest token TTL
 * (RESUME_TOKEN_EXPIRED: every token it covered has expired, so a fresh start loses
 * nothing), or ahead of what this replica could catch up with (RESUME_AHEAD).
 */
async function resumePositionOf(deps: WatchAdmissionDeps, session: SessionRecord, token: string): Promise<number | undefined> {
  if (token === "") return undefined;
  const decoded = decodeResumeToken(session, token);
  if (!decoded.ok) {
    throw invalidArgument(
      "resume_token",
      decoded.problem === "malformed"
        ? "is not a resume token this server issued (malformed or truncated); reconnect without it to start fresh"
        : "was not issued for this session, or was altered; pass the resume_token of an event of this session's stream",
    );
  }
  const { feedPosition, issuedAtMs } = decoded.point;
  if (deps.clock.now() - issuedAtMs > deps.maxTokenTtlMs) {
    throw capvendError(
      "RESUME_TOKEN_EXPIRED",
      `resume_token: older than ${Math.floor(deps.maxTokenTtlMs / 1000)}s (the longest token lifetime), so every token it covered has expired; discard held tokens and reconnect without resume_token`,
      { field: "resume_token" },
    );
  }
  const { revocations } = deps;
  if (feedPosition > revocations.lastSeq && !(await revocations.catchUp(feedPosition, RESUME_CATCH_UP_TIMEOUT_MS))) {
    throw capvendError(
      "RESUME_AHEAD",
      `resume_token: ahead of this server's revocation feed (position ${feedPosition} > ${revocations.lastSeq}); retry, here or on another replica, with the same resume_token`,
      { field: "resume_token" },
    );
  }
  return feedPosition;
}

/** The hub's token source: the one issuance path, each token with its wire form. */
export function streamTokens(issuer: Pick<Issuer, "issue">): StreamTokens {
  return {
    async mint(stream, grant, event) {
      const t = await issuer.issue(
        stream.session,
        { resource: grant.resource, scopes: grant.scopes, ttlMs: grant.ttlMs },
        { event, caller: { kind: "session", id: stream.session.id } },
      );
      return { jti: t.jti, issuedAtSec: t.claims.iat, issuedAtMs: t.issuedAtMs, expiresAtMs: t.expiresAtMs, message: tokenMessage(t) };
    },
  };
}
