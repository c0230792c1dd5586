import type { TokenSource } from "./token-source.js";

/** The shape SDKs that take a token callback expect. */
export interface AccessToken {
  token: string;
  expiresAt: Date;
}

/**
 * A token-provider function, `() => Promise<{ token, expiresAt }>`, for SDKs that ask for
 * a token themselves. Each call answers from the manager's memory while its token is good.
 */
export function tokenProvider(source: TokenSource, resource: string, opts: { scopes?: readonly string[] } = {}): () => Promise<AccessToken> {
  return async () => {
    const token = await source.getToken(resource, opts.scopes);
    const expiresAt = source.expiresAt(resource);
    return { token, expiresAt: new Date(expiresAt ?? Date.now()) };
  };
}
