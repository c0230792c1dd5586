import type { Clock } from "../clock.js";
import { watchDirectory } from "./directory-watcher.js";
import { readPolicyFiles, type PolicyFiles } from "./policy-set.js";

/** A running watch of a policy source; `close` is idempotent. */
export interface SourceWatch {
  close(): void;
}

/**
 * Where a policy engine reads its set from: a directory (the embedded default) or the NATS
 * policy bucket. `read` returns the set in force at the source now; `watch` calls
 * `onChange` after each change (debounced by the source) and `onError` when watching
 * stops for good.
 */
export interface PolicySource {
  /** Names the source in errors, logs and audit records: a directory path or `nats:<bucket>`. */
  readonly origin: string;
  read(): Promise<PolicyFiles>;
  watch?(onChange: () => void, onError: (error: Error) => void): SourceWatch;
}

/** A directory of `*.cedar` files and an optional `entities.json`, watched with fs.watch. */
export function directorySource(dir: string, opts: { clock: Clock; debounceMs: number }): PolicySource {
  return {
    origin: dir,
    read: () => readPolicyFiles(dir),
    watch: (onChange, onError) => watchDirectory(dir, { debounceMs: opts.debounceMs, clock: opts.clock, onChange, onError }),
  };
}
