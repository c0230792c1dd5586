import "./v8-workaround.js";
import { statefulIsAuthorized, type AuthorizationAnswer } from "@cedar-policy/cedar-wasm/nodejs";

import { systemClock, type Clock } from "../clock.js";
import { toCedarRequest, type AuthorizationRequest } from "./cedar-request.js";
import { ContextError } from "./context.js";
import type { EntityStore } from "./entity-store.js";
import { PolicyLoadError } from "./errors.js";
import { parsePolicySet } from "./policy-directory.js";
import { directorySource, type PolicySource, type SourceWatch } from "./policy-source.js";
import { acquireSlot, preparseInto, releaseSlot } from "./preparsed-slots.js";

export { ACTION_ENTITY_TYPE, type AuthorizationRequest } from "./cedar-request.js";
export { entityValue, EntityValue, type ContextRecord, type ContextValue, type EntityRef } from "./context.js";
export { PolicyLoadError, type PolicyLoadErrorCode } from "./errors.js";
export { ENTITIES_FILE, POLICY_FILE_SUFFIX } from "./policy-directory.js";
export { policyVersionOf, type PolicyFiles } from "./policy-set.js";
export { directorySource, type PolicySource } from "./policy-source.js";

/** Quiet time after the last change in a watched directory before it is reloaded, in ms. */
export const DEFAULT_RELOAD_DEBOUNCE_MS = 200;

/** The answer to one authorization request. */
export interface Decision {
  allowed: boolean;
  /**
   * Ids of the policies that decided it: the permits that allowed, or the forbids that
   * denied. Empty when nothing permits (deny by default).
   */
  policyIds: string[];
  /** Evaluation errors reported by Cedar (`<policy id>: <message>`), never secrets. */
  errors: string[];
}

/** What the engine runs with now. */
export interface PolicyEngineState {
  /** 1 for the first load, one more for each successful reload (a local generation counter). */
  version: number;
  /**
   * The policy version: a content hash of the set in force (16 hex digits, see
   * `policyVersionOf`), the same on every replica that runs the same set. Empty before the
   * first load.
   */
  policyVersion: string;
  /** Where the set in force came from: a directory path or `nats:<bucket>`. */
  origin: string;
  /** When the policies in force were loaded, in ms since the Unix epoch. */
  loadedAt: number;
  /** Number of policies in force. */
  policyCount: number;
  /** The message of the last failed reload or watch failure; cleared by a successful reload. */
  lastError?: string;
}

export type ReloadResult =
  | { ok: true; version: number; policyVersion: string; changed: boolean }
  | { ok: false; error: PolicyLoadError };

/** Reported after each reload attempt (not the first load). `version` is the one in force. */
export interface ReloadEvent {
  ok: boolean;
  version: number;
  /** The policy version (content hash) in force after the attempt. */
  policyVersion: string;
  /** On success: the version that was in force before (equal to `policyVersion` when unchanged). */
  previousPolicyVersion?: string;
  error?: PolicyLoadError;
}

/** Cedar policies from a directory, ready to answer authorization requests. */
export interface PolicyEngine {
  /** Decides one request. Synchronous and cheap: for the hot path. Never throws. */
  authorize(req: AuthorizationRequest): Decision;
  /** A snapshot of the engine's state. */
  readonly state: PolicyEngineState;
  /**
   * Reads the directory again. On failure the policies in force stay in force. Concurrent
   * calls run one after the other, each reading the directory afresh.
   */
  reload(): Promise<ReloadResult>;
  /**
   * Subscribes to every reload attempt after the first load (as `onReload`), e.g. to
   * re-evaluate live grants when the set changed. Returns an unsubscribe function.
   */
  subscribe(listener: (event: ReloadEvent) => void): () => void;
  /** Stops watching and frees the preparsed policies. Idempotent; later requests are denied. */
  close(): void;
}

export interface PolicyEngineOptions {
  /** The policy directory: `*.cedar` files and an optional `entities.json`. Ignored when `source` is given. */
  dir?: string;
  /** Where to read the set from instead of `dir` (e.g. the NATS policy bucket). */
  source?: PolicySource;
  /** Reload when the directory changes. Default false. */
  watch?: boolean;
  /** Quiet time before a watched change is loaded, in ms. Default {@link DEFAULT_RELOAD_DEBOUNCE_MS}. */
  debounceMs?: number;
  /** Told about every reload after the first load, including failed ones. */
  onReload?: (event: ReloadEvent) => void;
  /** Time source for `loadedAt` and the debounce timer. Default: the wall clock. */
  clock?: Clock;
}

/**
 * Loads a policy directory and returns an engine over it. Deny by default: a request is
 * allowed only when a permit matches and no forbid does.
 *
 * @throws PolicyLoadError when the directory is missing, holds no policies, or any file in
 *   it does not parse (the message names the file and line), or when it cannot be watched.
 */
export async function loadPolicyEngine(opts: PolicyEngineOptions): Promise<PolicyEngine> {
  const debounceMs = opts.debounceMs ?? DEFAULT_RELOAD_DEBOUNCE_MS;
  if (!Number.isFinite(debounceMs) || debounceMs < 0) {
    throw new RangeError(`debounceMs must be a non-negative number of milliseconds, got ${debounceMs}`);
  }
  const clock = opts.clock ?? systemClock;
  if (!opts.source && opts.dir === undefined) throw new TypeError("loadPolicyEngine needs dir or source");
  const source = opts.source ?? directorySource(opts.dir!, { clock, debounceMs });
  const engine = new CedarPolicyEngine(source, clock, opts.onReload);
  const first = await engine.reload();
  if (!first.ok) {
    engine.close();
    throw first.error;
  }
  if (opts.watch) {
    try {
      engine.startWatching();
    } catch (e) {
      // fs.watch throws at once for a vanished directory or an exhausted inotify limit.
      engine.close();
      throw new PolicyLoadError("directory_unreadable", { file: source.origin }, `cannot watch: ${(e as Error).message}`, { cause: e });
    }
  }
  return engine;
}

/** What a successful load put in force, swapped as a whole. */
interface Loaded {
  entities: EntityStore;
  /** Ids of the forbid policies: an error in one of them denies (see `decide`). */
  forbids: ReadonlySet<string>;
  policyVersion: string;
}

const CLOSED_DECISION_ERROR = "policy engine is closed";

class CedarPolicyEngine implements PolicyEngine {
  readonly #source: PolicySource;
  readonly #clock: Clock;
  readonly #listeners = new Set<(event: ReloadEvent) => void>();
  readonly #slot: string;
  #loaded: Loaded | undefined;
  #state: PolicyEngineState;
  #closed = false;
  #watch: SourceWatch | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(source: PolicySource, clock: Clock, onReload: ((event: ReloadEvent) => void) | undefined) {
    this.#source = source;
    this.#clock = clock;
    if (onReload) this.#listeners.add(onReload);
    this.#state = { version: 0, loadedAt: 0, policyCount: 0, policyVersion: "", origin: source.origin };
    this.#slot = acquireSlot();
  }

  get state(): PolicyEngineState {
    return { ...this.#state };
  }

  authorize(req: AuthorizationRequest): Decision {
    const loaded = this.#loaded;
    if (this.#closed || !loaded) return { allowed: false, policyIds: [], errors: [CLOSED_DECISION_ERROR] };
    let answer: AuthorizationAnswer;
    try {
      answer = statefulIsAuthorized({ ...toCedarRequest(req, loaded.entities), preparsedPolicySetId: this.#slot });
    } catch (e) {
      // A context Cedar cannot hold, or a value cedar-wasm refuses to deserialize: fail closed.
      const message = e instanceof ContextError ? e.message : `request rejected: ${(e as Error | undefined)?.message ?? String(e)}`;
      return { allowed: false, policyIds: [], errors: [message] };
    }
    return decide(answer, loaded.forbids);
  }

  subscribe(listener: (event: ReloadEvent) => void): () => void {
    const entry = (e: ReloadEvent) => listener(e);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  reload(): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#load());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
    this.#watch = undefined;
    this.#loaded = undefined;
    this.#listeners.clear();
    releaseSlot(this.#slot);
  }

  startWatching(): void {
    if (!this.#source.watch) return;
    this.#watch = this.#source.watch(
      () => void this.reload(),
      (e) => {
        if (this.#closed) return;
        const error = new PolicyLoadError("directory_unreadable", { file: this.#source.origin }, `watch stopped: ${e.message}`, { cause: e });
        this.#state = { ...this.#state, lastError: error.message };
        this.#report({ ok: false, version: this.#state.version, policyVersion: this.#state.policyVersion, error });
      },
    );
  }

  async #load(): Promise<ReloadResult> {
    const first = this.#state.version === 0;
    let result: ReloadResult;
    let previousVersion: string | undefined;
    try {
      if (this.#closed) throw closedError(this.#source.origin);
      const dir = parsePolicySet(await this.#source.read(), this.#source.origin);
      // Closed while reading: the slot may already belong to another engine.
      if (this.#closed) throw closedError(this.#source.origin);
      const answer = preparseInto(this.#slot, {
        staticPolicies: Object.fromEntries(dir.policies.map((p) => [p.id, p.text])),
      });
      if (answer.type === "failure") {
        // Each file parsed on its own, so this is unexpected; the old set is untouched.
        const detail = answer.errors[0]?.message ?? "rejected by Cedar";
        throw new PolicyLoadError("policy_syntax", { file: this.#source.origin }, detail);
      }
      // Preparse and swap happen in one synchronous step, so no decision ever sees the new
      // policies with the old entities.
      this.#loaded = {
        entities: dir.entities,
        forbids: new Set(dir.policies.filter((p) => p.effect === "forbid").map((p) => p.id)),
        policyVersion: dir.version,
      };
      const previous = this.#state.policyVersion;
      this.#state = {
        version: this.#state.version + 1,
        loadedAt: this.#clock.now(),
        policyCount: dir.policies.length,
        policyVersion: dir.version,
        origin: this.#source.origin,
      };
      result = { ok: true, version: this.#state.version, policyVersion: dir.version, changed: previous !== dir.version };
      previousVersion = previous;
    } catch (e) {
      const error =
        e instanceof PolicyLoadError
          ? e
          : new PolicyLoadError("directory_unreadable", { file: this.#source.origin }, `cannot load: ${(e as Error | undefined)?.message ?? String(e)}`, {
              cause: e,
            });
      if (!this.#closed) this.#state = { ...this.#state, lastError: error.message };
      result = { ok: false, error };
    }
    if (!first && !this.#closed) {
      this.#report(
        result.ok
          ? { ok: true, version: result.version, policyVersion: result.policyVersion, previousPolicyVersion: previousVersion }
          : { ok: false, version: this.#state.version, policyVersion: this.#state.policyVersion, error: result.error },
      );
    }
    return result;
  }

  #report(event: ReloadEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch {
        // A failing listener must not break reloading; it is the listener's bug to log.
      }
    }
  }
}

function closedError(dir: string): PolicyLoadError {
  return new PolicyLoadError("closed", { file: dir }, "policy engine is closed");
}

/**
 * Turns Cedar's answer into a decision.
 *
 * Cedar skips a policy whose condition errors. For a permit that only denies, as wanted;
 * for a forbid it would let the request through exactly when the guard is broken, so an
 * erroring forbid denies here, and is named among the deciding policies.
 */
function decide(answer: AuthorizationAnswer, forbids: ReadonlySet<string>): Decision {
  if (answer.type === "failure") {
    return { allowed: false, policyIds: [], errors: answer.errors.map((e) => e.message) };
  }
  const { decision, diagnostics } = answer.response;
  if (diagnostics.errors.length === 0) {
    return { allowed: decision === "allow", policyIds: diagnostics.reason, errors: [] };
  }
  const errors = diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`);
  const brokenForbids = diagnostics.errors.filter((e) => forbids.has(e.policyId)).map((e) => e.policyId);
  if (brokenForbids.length === 0) {
    return { allowed: decision === "allow", policyIds: diagnostics.reason, errors };
  }
  const denying = decision === "deny" ? diagnostics.reason : [];
  return { allowed: false, policyIds: [...new Set([...denying, ...brokenForbids])], errors };
}
