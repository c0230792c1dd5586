import { authorizedFetch, type AuthorizedFetchOptions } from "./authorized-fetch.js";
import { scrubError, scrubValue } from "./scrub.js";
import type { TokenSource } from "./token-source.js";

/**
 * Wraps an agent tool so it never handles a token: the tool gets an authorized fetch for
 * `resource` as its first argument, and its result and any error it throws are scrubbed of
 * token-shaped strings (JWTs, session credentials, Authorization values, and every token
 * the call used or the manager holds) before they reach the agent or the LLM.
 */
export function toolWrapper<A extends unknown[], R>(
  source: TokenSource,
  resource: string,
  fn: (fetch: typeof globalThis.fetch, ...args: A) => Promise<R> | R,
  opts: AuthorizedFetchOptions = {},
): (...args: A) => Promise<R> {
  return async (...args: A): Promise<R> => {
    // Every token handed out during this call, scrubbed verbatim whatever its shape.
    const used = new Set<string>();
    const recording: TokenSource = {
      getToken: async (...a) => remember(used, await source.getToken(...a)),
      freshToken: async (...a) => remember(used, await source.freshToken(...a)),
      expiresAt: (r) => source.expiresAt(r),
      secrets: () => source.secrets(),
    };
    const secrets = () => [...used, ...source.secrets()];
    let result: R;
    try {
      result = await fn(authorizedFetch(recording, resource, opts), ...args);
    } catch (err) {
      throw scrubError(err, secrets());
    }
    return scrubValue(result, secrets());
  };
}

function remember(set: Set<string>, token: string): string {
  set.add(token);
  return token;
}
