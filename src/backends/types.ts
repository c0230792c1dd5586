/**
 * What a replica's shared state is made of, whatever holds it: the session store, the
 * revocation list and the rest of `Backends`, with the records they hold and the constants
 * every implementation shares. Implementations live beside this file (`memory/`, `file/`,
 * `nats/`) and import it; this file imports none of them. `src/main.ts` chooses one.
 */
import type { JsonWebKey } from "node:crypto";
import type { Checkpoint } from "../audit/checkpoint.js";
import type { AuditSink } from "../audit/sink.js";
import type { Clock } from "../clock.js";
import type { Config } from "../config/config.js";
import type { Jwks, KeyRing } from "../keys/key-ring.js";
import type { Logger } from "../logging/logger.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { PolicySource } from "../policy/policy-source.js";

/** The shared state of a replica: journaled in the data directory by default, in process with CAPVEND_STATE_STORE=memory, on NATS JetStream with NATS_URL. */
export interface Backends {
  sessions: SessionStore;
  revocations: RevocationList;
  /**
   * The JWKS to serve and verify with: this replica's keys, or the union of every
   * replica's; and when each key stopped signing.
   */
  publicKeys: { jwks(): Jwks; retiredAt(kid: string): number | undefined };
  /**
   * Makes a new public key known to every replica before it signs anything (NATS: put in
   * the key bucket); absent when there is no one else to tell.
   */
  announceKey?(jwk: JsonWebKey): Promise<void>;
  /** Audit sinks beside the local file (a JetStream stream with NATS). */
  auditSinks: AuditSink[];
  /**
   * Publishes a signed audit checkpoint outside this replica's disk (NATS: the JetStream
   * audit stream, subject `capvend.audit.checkpoint.<kid>`); absent without NATS.
   */
  publishAuditCheckpoint?(checkpoint: Checkpoint): Promise<void>;
  /**
   * Health of the shared parts, by health service name ("capvend.revocation",
   * "capvend.sessions"): reports each service's current status at once, then every change;
   * the server maps it onto grpc.health.v1. Returns an unsubscribe function. Absent in
   * memory mode (nothing shared can fail).
   */
  watchHealth?(listener: (service: string, serving: boolean) => void): () => void;
  /**
   * Where the policy set comes from when replicas share one (NATS: the policy bucket, which
   * falls back to `fallback`, the policy directory, until a set is pushed). Absent in memory
   * mode: the directory is the source.
   */
  policySource?(fallback: PolicySource): Promise<PolicySource>;
  /** Reports the engine's policy version where every replica can read it; returns a stop function. */
  reportPolicy?(engine: PolicyEngine): () => void;
  /**
   * Questions to every other replica about state only its memory holds, such as a session's
   * open streams (NATS request/reply); absent with one replica.
   */
  replicaQueries?: ReplicaQueries;
  /** Every replica's last policy report (NATS); absent in memory mode. */
  policyStatuses?(): Promise<ReplicaPolicyStatus[]>;
  /** Closes connections and timers. Idempotent. */
  close(): Promise<void>;
}

export interface BackendOptions {
  config: Config;
  clock: Clock;
  logger: Logger;
  keyRing: KeyRing;
}

/** What a session may ask for: one resource, its scopes, and an optional lifetime. */
export interface GrantSpec {
  resource: string;
  scopes: string[];
  /** Token lifetime for this grant in ms; undefined means the server default. */
  ttlMs?: number;
}

/**
 * A session as stored. It never holds the session credential, only the sha256 of its
 * secret part, so a copy of the store (or a NATS KV bucket) cannot be replayed.
 */
export interface SessionRecord {
  id: string;
  agentId: string;
  userId?: string;
  grants: GrantSpec[];
  labels: Record<string, string>;
  /** sha256 hex of the credential's secret. */
  credentialHash: string;
  /**
   * sha256 hex of the secrets of credentials handed out by StartSession retries (same
   * request_id), each as valid as the first; at most MAX_RETRY_CREDENTIALS, oldest first.
   */
  retryCredentialHashes?: string[];
  /** sha256 hex of the StartSession request that opened it, when it carried a request_id. */
  requestFingerprint?: string;
  /** Who started it: the orchestrator id. */
  startedBy: string;
  /** ms since epoch. */
  createdAt: number;
  /** ms since epoch: the session's hard end. */
  expiresAt: number;
  /** ms since epoch, once ended by EndSession or a revocation. */
  endedAt?: number;
  endReason?: string;
}

/** Credentials a session keeps from StartSession retries; one more retires the oldest. */
export const MAX_RETRY_CREDENTIALS = 8;

/** `create` found a session with that id already stored (on any replica). */
export class SessionExistsError extends Error {
  override readonly name = "SessionExistsError";
  constructor(readonly sessionId: string) {
    super(`session ${sessionId} already exists`);
  }
}

/**
 * Where sessions live: in process memory, in the data directory (file), or in a JetStream KV
 * bucket shared by every replica (NATS).
 *
 * When the storage behind a store is unreachable (NATS down or not answering in time, a
 * journal write failing), every backend behaves alike (test/contract/session-store.contract.ts):
 * - `get` and `countStartedBy` answer from what this replica holds: the memory and file
 *   stores hold every session, the NATS store its watch-fed cache of the bucket. `get`
 *   rejects only for a session the replica does not hold.
 * - Writes (`create`, `end`, `addCredential`, `delete`) reject: nothing is half-written.
 * - A rejection is an Error naming what failed, never a record's contents; callers map it
 *   to UNAVAILABLE (SESSION_STORE_UNAVAILABLE) or, where the store update is not the
 *   point of the call (ending the session after its revocation is stored), log it.
 * The memory store cannot be cut off, so it never rejects: a special case the contract
 * allows.
 */
export interface SessionStore {
  /**
   * Stores a new session. Rejects with SessionExistsError if the id exists, atomically: of
   * concurrent creates one wins, and a loser hears SessionExistsError only once `get`
   * returns the winner (StartSession retries with one request_id rely on it).
   */
  create(record: SessionRecord): Promise<void>;
  /** A copy of the session's record (the caller cannot change the store through it), or undefined when unknown. */
  get(id: string): Promise<SessionRecord | undefined>;
  /**
   * Marks a session ended. Idempotent: ending an ended session keeps the first end.
   * Resolves to the updated record, or undefined when the session is unknown.
   */
  end(id: string, reason: string, atMs: number): Promise<SessionRecord | undefined>;
  /**
   * Adds the hash of another valid credential (a StartSession retry), retiring the oldest
   * retry credential beyond MAX_RETRY_CREDENTIALS. Resolves to the updated record, or
   * undefined when the session is unknown.
   */
  addCredential(id: string, credentialHash: string): Promise<SessionRecord | undefined>;
  /** Removes a session whose creation could not be completed (its audit record failed). */
  delete(id: string): Promise<void>;
  /**
   * How many sessions started by orchestrator `startedBy` pass `live` (the caller judges
   * ended, expired and revoked). For the per-orchestrator quota: it reads what this replica
   * holds (with NATS, its cache of the shared bucket), without a round trip.
   */
  countStartedBy(startedBy: string, live: (r: SessionRecord) => boolean): Promise<number>;
  /**
   * Sessions in id order after `afterId`, that `match` accepts, at most `limit` of them
   * (AdminService.ListSessions pages through them). Optional: a store without it makes
   * ListSessions answer INTERNAL.
   */
  list?(query: SessionListQuery): Promise<SessionRecord[]>;
  close(): Promise<void>;
}

/** What `SessionStore.list` returns: a page of sessions in id order. */
export interface SessionListQuery {
  /** Only ids greater than this one (the last id of the previous page). */
  afterId?: string;
  limit: number;
  match(record: SessionRecord): boolean;
}


/** What a revocation targets; the names match RevokeRequest's oneof. */
export type RevocationKind = "token_id" | "session_id" | "agent_id" | "user_id" | "resource";

export const REVOCATION_KINDS: readonly RevocationKind[] = ["token_id", "session_id", "agent_id", "user_id", "resource"];

/**
 * One revocation: every token matching `kind`/`value` issued at or before `revokedAt` is
 * revoked. A rule instead of a list of tokens, so revoking an agent with a million live
 * tokens is one small record, it reaches replicas that never saw those tokens, and it can
 * be forgotten once nothing it could match is still alive (`expiresAt`).
 */
export interface Revocation {
  /** `rev_…`: names the revocation in the audit log and on the feed. */
  id: string;
  kind: RevocationKind;
  value: string;
  reason: string;
  /** ms since epoch. */
  revokedAt: number;
  /** ms since epoch after which nothing this rule matches can still be alive. */
  expiresAt: number;
  /** Who revoked: "orchestrator:<id>", "session:<id>" or "system". */
  by: string;
  /**
   * Position in the revocation feed, set when the list applies it: a local counter in
   * memory, the JetStream sequence with NATS. Streams build their revisions on it.
   */
  seq?: number;
}

/** What a token is, for matching against revocations (all known from its claims). */
export interface TokenSubject {
  jti: string;
  sessionId: string;
  agentId: string;
  userId?: string;
  resource: string;
  /** Seconds since epoch (the iat claim). */
  issuedAtSec: number;
  /** The exact mint time in ms when known (capvend jtis carry it); makes matching exact. */
  issuedAtMs?: number;
}

/** What a session is, for matching against session, agent and user revocations. */
export interface SessionSubject {
  sessionId: string;
  agentId: string;
  userId?: string;
  /** ms since epoch. */
  createdAt: number;
}

/**
 * The revocation list of one replica, fed by its own revocations and (with NATS) every
 * other replica's. Lookups are synchronous and O(1): they sit on the Introspect and
 * issuance paths.
 *
 * The contract every implementation keeps (memory, file, NATS; enforced by
 * test/contract/revocation-list.contract.ts):
 * - When `publish` resolves, the rule is in force for lookups here and every listener has
 *   been told of it.
 * - Listeners hear of rules in feed order, each once, with its `seq`. One exception: when a
 *   NATS replica's in-order apply of its own acknowledged rule lags past its bound (a
 *   consumer being re-created), `publish` tells listeners at once with the rule *without*
 *   `seq` (its position is not yet reached here, so nobody may resume past it), and does
 *   not tell them again when the feed delivers it.
 * - A rule already past `expiresAt` when it is applied (published late, replayed after a
 *   restart, skewed clocks) can match nothing alive: it takes its feed position (`lastSeq`
 *   moves past it) but is neither held, nor told to listeners, nor replayed by `since`.
 * - `catchUp` honours its timeout on every backend.
 */
export interface RevocationList {
  /**
   * Records a revocation and fans it out. Resolves once it is durable (memory: at once;
   * file: in the fsync'd journal; NATS: acknowledged by JetStream), in force for lookups
   * here, and told to every listener. Rejects when it could not be stored, in which case it
   * must be reported as not done.
   */
  publish(revocation: Revocation): Promise<void>;
  /**
   * The token-level revocation (by token id or resource) that revokes this token, if any.
   * A token is also dead when its session is: check `sessionRevocation` too.
   */
  tokenRevocation(token: TokenSubject): Revocation | undefined;
  /** The revocation (by session, agent or user) that ended this session, if any. */
  sessionRevocation(session: SessionSubject): Revocation | undefined;
  /**
   * The revocation (by resource or token id) that withdrew the session's grant on
   * `resource`, if any (see `withdrawsGrant`). Session-ending rules are `sessionRevocation`'s.
   */
  grantRevocation(session: SessionSubject, resource: string): Revocation | undefined;
  /**
   * Called for every revocation applied, local or remote, synchronously and in feed order
   * (see the exception above); a listener that throws never stops the others. Returns an
   * unsubscribe function.
   */
  subscribe(listener: (revocation: Revocation) => void): () => void;
  /** The highest feed position applied so far (0 before any). */
  readonly lastSeq: number;
  /**
   * Waits until every revocation up to feed position `seq` is applied here (a replica that
   * lags the shared feed, or a position a publish in flight will reach). Resolves true as
   * soon as it is (at once when it already is), false once `timeoutMs` (ms) passed first or
   * the list closed. Every backend waits up to `timeoutMs`, no longer: memory and file lists,
   * fed by their own publishes only, answer true when one reaches `seq` in time.
   */
  catchUp(seq: number, timeoutMs: number): Promise<boolean>;
  /** Applied revocations after `seq`, in feed order, that can still match something alive. */
  since(seq: number): Revocation[];
  /** Number of rules held (memory stays bounded by the rules still able to match). */
  readonly size: number;
  close(): Promise<void>;
}


/** One replica's answer. */
export interface ReplicaAnswer {
  replica: string;
  body: Uint8Array;
}

/** What came back from asking every other replica. */
export interface ReplicaQueryResult {
  answers: ReplicaAnswer[];
  /** Replicas known to be alive (they reported recently) that did not answer in time. */
  unanswered: string[];
}

/**
 * Questions one replica asks all the others over core NATS request/reply, on
 * `capvend.replicas.<topic>`: every replica answers (no queue group), and the asker gathers
 * answers until every replica it knows of answered or the timeout passed. Used for state that
 * lives only in a replica's memory, such as its open streams.
 */
export interface ReplicaQueries {
  /** Answers `topic` questions from other replicas; returns a stop function. */
  answer(topic: string, respond: (question: Uint8Array) => Uint8Array | Promise<Uint8Array>): () => void;
  /** Asks every other replica; never rejects (a replica that cannot be reached is unanswered). */
  ask(topic: string, question: Uint8Array): Promise<ReplicaQueryResult>;
}

/** What a replica reports about the policy it runs. */
export interface ReplicaPolicyStatus {
  replica: string;
  policy_version: string;
  /** `nats:capvend_policy` or the directory the set came from. */
  origin: string;
  loaded_at_ms: number;
  /** The last failed reload, when the replica runs an older set than it was given. */
  last_error?: string;
  reported_at_ms: number;
}

/** How often a memory-held revocation list drops rules past their expiry, ms. */
export const REVOCATION_PRUNE_INTERVAL_MS = 30 * 1000;

/** How often a session store forgets sessions past their `expiresAt`, ms. */
export const SESSION_SWEEP_INTERVAL_MS = 60 * 1000;
