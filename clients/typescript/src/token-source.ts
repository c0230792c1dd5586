/** What the injection helpers need from a CredentialManager (or a stand-in). */
export interface TokenSource {
  /** A valid token for `resource` (see CredentialManager.getToken). */
  getToken(resource: string, scopes?: readonly string[], opts?: { signal?: AbortSignal }): Promise<string>;
  /** A token issued just now, for one retry after a refusal (see CredentialManager.freshToken). */
  freshToken(resource: string, scopes?: readonly string[], opts?: { signal?: AbortSignal }): Promise<string>;
  /** Expiry of the token getToken would return, ms since the epoch. */
  expiresAt(resource: string): number | undefined;
  /** Secrets held now, for scrubbing output. */
  secrets(): string[];
}
