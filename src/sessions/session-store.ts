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
 * Where sessions live. The memory store serves one replica; a JetStream KV store shares
 * them between replicas. Every method may fail (a store that is away): callers map the
 * failure to UNAVAILABLE.
 */
export interface SessionStore {
  /** Stores a new session. Rejects with SessionExistsError if the id exists (atomically: of concurrent creates, one wins). */
  create(record: SessionRecord): Promise<void>;
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

/** The page `list` answers, from every record a store holds (sorted here by id). */
export function pageOf(records: Iterable<SessionRecord>, query: SessionListQuery): SessionRecord[] {
  const after = query.afterId;
  return [...records]
    .filter((r) => (after === undefined || r.id > after) && query.match(r))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, query.limit);
}

/**
 * Session ids by the orchestrator that started them: lets a store count one orchestrator's
 * sessions without walking every session it holds.
 */
export class StartedByIndex {
  readonly #ids = new Map<string, Set<string>>();

  add(startedBy: string, id: string): void {
    let set = this.#ids.get(startedBy);
    if (!set) this.#ids.set(startedBy, (set = new Set()));
    set.add(id);
  }

  remove(startedBy: string, id: string): void {
    const set = this.#ids.get(startedBy);
    if (!set?.delete(id)) return;
    if (set.size === 0) this.#ids.delete(startedBy);
  }

  /** Counts the ids of `startedBy` whose record (looked up by `get`) passes `live`. */
  count(startedBy: string, get: (id: string) => SessionRecord | undefined, live: (r: SessionRecord) => boolean): number {
    let n = 0;
    for (const id of this.#ids.get(startedBy) ?? []) {
      const r = get(id);
      if (r && live(r)) n++;
    }
    return n;
  }
}
