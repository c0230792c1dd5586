import type { Clock, TimerHandle } from "../../clock.js";
import { clonePlain } from "../clone-record.js";
import { MAX_RETRY_CREDENTIALS, SESSION_SWEEP_INTERVAL_MS, SessionExistsError, type SessionListQuery, type SessionRecord, type SessionStore } from "../types.js";
import { pageOf, StartedByIndex } from "../session-index.js";

/**
 * Sessions in process memory. An expired session is forgotten at the next sweep after its
 * `expiresAt`, so memory stays bounded by the sessions alive at once.
 */
export class MemorySessionStore implements SessionStore {
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #byStarter = new StartedByIndex();
  readonly #clock: Clock;
  #sweep: TimerHandle | undefined;
  #closed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#scheduleSweep();
  }

  get size(): number {
    return this.#sessions.size;
  }

  async create(record: SessionRecord): Promise<void> {
    if (this.#sessions.has(record.id)) throw new SessionExistsError(record.id);
    this.#sessions.set(record.id, clonePlain(record));
    this.#byStarter.add(record.startedBy, record.id);
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const r = this.#sessions.get(id);
    return r && clonePlain(r);
  }

  async end(id: string, reason: string, atMs: number): Promise<SessionRecord | undefined> {
    const r = this.#sessions.get(id);
    if (!r) return undefined;
    if (r.endedAt === undefined) {
      r.endedAt = atMs;
      r.endReason = reason;
    }
    return clonePlain(r);
  }

  async addCredential(id: string, credentialHash: string): Promise<SessionRecord | undefined> {
    const r = this.#sessions.get(id);
    if (!r) return undefined;
    r.retryCredentialHashes = [...(r.retryCredentialHashes ?? []), credentialHash].slice(-MAX_RETRY_CREDENTIALS);
    return clonePlain(r);
  }

  async delete(id: string): Promise<void> {
    this.#forget(id);
  }

  async countStartedBy(startedBy: string, live: (r: SessionRecord) => boolean): Promise<number> {
    return this.#byStarter.count(startedBy, (id) => this.#sessions.get(id), live);
  }

  #forget(id: string): void {
    const r = this.#sessions.get(id);
    if (!r) return;
    this.#sessions.delete(id);
    this.#byStarter.remove(r.startedBy, id);
  }

  async list(query: SessionListQuery): Promise<SessionRecord[]> {
    return pageOf(this.#sessions.values(), query).map((r) => structuredClone(r));
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweep) this.#clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }

  #scheduleSweep(): void {
    this.#sweep = this.#clock.setTimeout(() => {
      const now = this.#clock.now();
      for (const [id, r] of this.#sessions) if (r.expiresAt <= now) this.#forget(id);
      if (!this.#closed) this.#scheduleSweep();
    }, SESSION_SWEEP_INTERVAL_MS);
  }
}
