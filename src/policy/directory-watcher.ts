import { watch, type FSWatcher } from "node:fs";

import type { Clock, TimerHandle } from "../clock.js";

/** A running watch; `close` is idempotent. */
export interface DirectoryWatch {
  close(): void;
}

export interface DirectoryWatchOptions {
  /** Quiet time after the last change before `onChange` runs, in milliseconds. */
  debounceMs: number;
  clock: Clock;
  /** Runs once per burst of changes. */
  onChange: () => void;
  /** The watch broke (the directory was removed, the watch limit was hit); it has stopped. */
  onError: (error: Error) => void;
}

/**
 * Calls `onChange` once after each burst of changes in `dir`.
 *
 * Editors save through a temporary file and a rename, and Kubernetes swaps a `..data`
 * symlink, so every event in the directory counts, whatever file it names, and a burst is
 * folded into one call. The watch does not keep the process alive.
 */
export function watchDirectory(dir: string, opts: DirectoryWatchOptions): DirectoryWatch {
  let timer: TimerHandle | undefined;
  let closed = false;
  const fire = () => {
    timer = undefined;
    if (!closed) opts.onChange();
  };
  const watcher: FSWatcher = watch(dir, { persistent: false }, () => {
    if (closed) return;
    if (timer !== undefined) opts.clock.clearTimeout(timer);
    timer = opts.clock.setTimeout(fire, opts.debounceMs);
  });
  const close = () => {
    if (closed) return;
    closed = true;
    if (timer !== undefined) opts.clock.clearTimeout(timer);
    timer = undefined;
    watcher.close();
  };
  watcher.on("error", (e: Error) => {
    close();
    opts.onError(e);
  });
  return { close };
}
