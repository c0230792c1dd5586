import type { Revocation, RevocationKind, SessionSubject, TokenSubject } from "./types.js";
import { grantKey, grantKeyOfJti, revokesSession, revokesToken, withdrawsGrant } from "./revocation-rules.js";

/**
 * The rules in force, indexed by kind and value. For each target only the latest
 * revocation matters (it covers every token the earlier ones did), so a target costs one
 * entry however often it is revoked.
 */
export class RevocationIndex {
  readonly #byKind = new Map<RevocationKind, Map<string, Revocation>>();
  /** Token revocations by the grant they withdraw (session tag + grant tag), latest only. */
  readonly #byGrant = new Map<string, Revocation>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Adds a rule; returns false when it changes nothing (an equal or later rule was held). */
  add(r: Revocation): boolean {
    if (r.kind === "token_id") this.#addGrant(r);
    let m = this.#byKind.get(r.kind);
    if (!m) this.#byKind.set(r.kind, (m = new Map()));
    const old = m.get(r.value);
    if (!old) {
      m.set(r.value, r);
      this.#size++;
      return true;
    }
    const latest = r.revokedAt > old.revokedAt ? r : old;
    const expiresAt = Math.max(r.expiresAt, old.expiresAt);
    if (latest === old && expiresAt === old.expiresAt) return false;
    m.set(r.value, { ...latest, expiresAt });
    return true;
  }

  /**
   * Token-level rules only (token id, resource). Session, agent and user rules end whole
   * sessions and are judged on the session's creation time in ms (`session`), which is
   * exact where a token's whole-second iat is not.
   */
  token(t: TokenSubject): Revocation | undefined {
    return this.#match("token_id", t.jti, (r) => revokesToken(r, t)) ?? this.#match("resource", t.resource, (r) => revokesToken(r, t));
  }

  session(s: SessionSubject): Revocation | undefined {
    return (
      this.#match("session_id", s.sessionId, (r) => revokesSession(r, s)) ??
      this.#match("agent_id", s.agentId, (r) => revokesSession(r, s)) ??
      (s.userId === undefined ? undefined : this.#match("user_id", s.userId, (r) => revokesSession(r, s)))
    );
  }

  /** Resource and token rules that withdrew the session's grant on `resource` (see `withdrawsGrant`). */
  grant(s: SessionSubject, resource: string): Revocation | undefined {
    const test = (r: Revocation) => withdrawsGrant(r, s, resource);
    const byResource = this.#match("resource", resource, test);
    if (byResource) return byResource;
    if (this.#byGrant.size === 0) return undefined;
    const r = this.#byGrant.get(grantKey(s.sessionId, resource));
    return r && test(r) ? r : undefined;
  }

  /** Forgets rules that can no longer match anything alive. Returns how many were dropped. */
  prune(nowMs: number): number {
    let dropped = 0;
    for (const m of this.#byKind.values()) {
      for (const [value, r] of m) {
        if (r.expiresAt <= nowMs) {
          m.delete(value);
          dropped++;
        }
      }
    }
    for (const [key, r] of this.#byGrant) if (r.expiresAt <= nowMs) this.#byGrant.delete(key);
    this.#size -= dropped;
    return dropped;
  }

  #addGrant(r: Revocation): void {
    const key = grantKeyOfJti(r.value);
    if (key === undefined) return;
    const old = this.#byGrant.get(key);
    if (!old) {
      this.#byGrant.set(key, r);
      return;
    }
    // Only the latest matters (it covers every session the earlier ones did), kept as long as any.
    const latest = r.revokedAt > old.revokedAt ? r : old;
    this.#byGrant.set(key, { ...latest, expiresAt: Math.max(r.expiresAt, old.expiresAt) });
  }

  #match(kind: RevocationKind, value: string, test: (r: Revocation) => boolean): Revocation | undefined {
    const r = this.#byKind.get(kind)?.get(value);
    return r && test(r) ? r : undefined;
  }
}
