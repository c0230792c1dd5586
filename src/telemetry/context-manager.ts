/**
 * The one process-wide piece of telemetry: the context manager that carries the active span
 * across `await`s. Tracers and meters stay per instance (injected), but "which span is
 * active here" is a property of the async call chain, shared by every server in the process
 * and by the logger's trace ids, so it lives in the global API.
 */
import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";

let installed: boolean | undefined;

/**
 * Registers an AsyncLocalStorage context manager with the global API, once per process.
 * When the embedding application registered its own first, that one stays (and is used).
 * Returns whether this call or an earlier one installed capvend's.
 */
export function ensureContextManager(): boolean {
  if (installed === undefined) {
    installed = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  }
  return installed;
}
