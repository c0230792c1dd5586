/**
 * @capvend/client: the runtime side of a capvend agent session. A CredentialManager keeps
 * the session's tokens fresh over one WatchSession stream; authorizedFetch, the Connect
 * interceptor, the token provider and the tool wrapper put them on requests so agent code
 * and the LLM never hold one. Runs in Node and in browsers (nothing here imports node:*).
 */
export {
  CredentialManager,
  DEFAULT_GET_TOKEN_TIMEOUT_MS,
  DEFAULT_MIN_REMAINING_MS,
  DEFAULT_OFFLINE_GRACE_MS,
  type CredentialEvent,
  type CredentialManagerOptions,
  type CredentialManagerState,
  type CredentialManagerStatus,
  type ManagedGrant,
  type TransportFactory,
} from "./credential-manager.js";
export { CapvendError, CAPVEND_ERROR_DOMAIN, SERVER_REASONS, isRetryable, isServerReason, type CapvendErrorCode, type ClientReason, type ServerReason } from "./errors.js";
export { backoffDelay, DEFAULT_BACKOFF_INITIAL_MS, DEFAULT_BACKOFF_MAX_MS, type BackoffOptions } from "./backoff.js";
export { DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_OPEN_TIMEOUT_MS, HEARTBEAT_MISSES, MIN_HEARTBEAT_TIMEOUT_MS } from "./watchdog.js";
export { EVENT_BUFFER_LIMIT } from "./event-feed.js";
export { authorizedFetch, type AuthorizedFetchOptions } from "./authorized-fetch.js";
export { credentialInterceptor, type CredentialInterceptorOptions } from "./interceptor.js";
export { tokenProvider, type AccessToken } from "./token-provider.js";
export { toolWrapper } from "./tool-wrapper.js";
export { scrubText, scrubValue, scrubError, REDACTED } from "./scrub.js";
export { systemClock, type Clock } from "./clock.js";
export type { TokenSource } from "./token-source.js";
