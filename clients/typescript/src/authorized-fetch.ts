import type { TokenSource } from "./token-source.js";

/** Options of authorizedFetch. */
export interface AuthorizedFetchOptions {
  /** Scopes the call needs (must be among the grant's); default the grant's. */
  scopes?: readonly string[];
  /** The fetch to wrap; default globalThis.fetch. */
  fetch?: typeof fetch;
}

/**
 * A fetch for one resource that sends `Authorization: Bearer <token>`. The headers of a
 * `Request` input and of `init` are kept (init's win, as in fetch); only Authorization is
 * set. On a 401 the call is sent once more with a token issued just then; a second 401 is
 * returned as it is. The token never appears in what the caller sees.
 */
export function authorizedFetch(source: TokenSource, resource: string, opts: AuthorizedFetchOptions = {}): typeof fetch {
  const base = opts.fetch ?? globalThis.fetch;
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    const request = new Request(input, init);
    // Kept aside before the first send consumes the body.
    const retry = request.clone();
    request.headers.set("authorization", `Bearer ${await source.getToken(resource, opts.scopes, { signal })}`);
    const first = await base(request);
    if (first.status !== 401) return first;
    const fresh = await source.freshToken(resource, opts.scopes, { signal });
    retry.headers.set("authorization", `Bearer ${fresh}`);
    // The first answer's body is not wanted: free its connection.
    await first.body?.cancel().catch(() => undefined);
    return base(retry);
  };
}
