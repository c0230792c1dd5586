/** A token held for a grant. `jwt` never leaves through events, state or errors. */
export interface HeldToken {
  readonly jwt: string;
  readonly tokenId: string;
  /** Expiry, ms since the epoch. */
  readonly expiresAt: number;
  readonly scopes: readonly string[];
  /** The stream that pushed it (the manager's count of opened streams). */
  readonly stream: number;
}

/** Why a grant gives no more tokens. */
export interface StoppedGrant {
  readonly reason: string;
  readonly tokenIds: readonly string[];
}

/**
 * The tokens the manager holds, one per grant (by grant index), and the grants the server
 * stopped. The rules: a token named by a revocation is gone before anyone hears of the
 * revocation; a stopped grant never takes a token again; a token is handed out only with
 * at least `minRemainingMs` of life left and while the manager can vouch for it.
 */
export class TokenCache {
  readonly #held = new Map<number, HeldToken>();
  readonly #stopped = new Map<number, StoppedGrant>();
  /** Ids of every token revoked so far: a late or replayed push of one is refused. */
  readonly #revoked = new Set<string>();

  /** The token for `grant` if it may be handed out at `nowMs`. */
  usable(grant: number, nowMs: number, minRemainingMs: number): HeldToken | undefined {
    const t = this.#held.get(grant);
    if (t === undefined || t.expiresAt - nowMs < minRemainingMs) return undefined;
    return t;
  }

  held(grant: number): HeldToken | undefined {
    return this.#held.get(grant);
  }

  stopped(grant: number): StoppedGrant | undefined {
    return this.#stopped.get(grant);
  }

  /** Takes a pushed token, unless its grant was stopped or the token was revoked. Returns whether it was taken. */
  put(grant: number, token: HeldToken): boolean {
    if (this.#stopped.has(grant) || this.#revoked.has(token.tokenId)) return false;
    this.#held.set(grant, token);
    return true;
  }

  /** Drops the named tokens wherever held; returns the grants that lost theirs. */
  revokeTokens(tokenIds: Iterable<string>): number[] {
    const ids = new Set(tokenIds);
    for (const id of ids) this.#revoked.add(id);
    const lost: number[] = [];
    for (const [grant, t] of this.#held) {
      if (ids.has(t.tokenId)) {
        this.#held.delete(grant);
        lost.push(grant);
      }
    }
    return lost;
  }

  /** Stops a grant for good and drops its token. */
  stop(grant: number, reason: string): void {
    const t = this.#held.get(grant);
    if (t) this.#revoked.add(t.tokenId);
    this.#held.delete(grant);
    if (!this.#stopped.has(grant)) this.#stopped.set(grant, { reason, tokenIds: t ? [t.tokenId] : [] });
  }

  /** Forgets every held token (the grants stay as they are). */
  dropAll(): void {
    this.#held.clear();
  }

  /** Every held token's id and expiry, for state(). */
  entries(): [number, HeldToken][] {
    return [...this.#held];
  }

  /** Every held JWT, for scrubbing. */
  secrets(): string[] {
    return [...this.#held.values()].map((t) => t.jwt);
  }
}
