/**
 * Why a policy directory could not be loaded, as a closed union so callers (the server's
 * startup, the reload reporter) can branch on a stable value instead of parsing messages.
 */
export type PolicyLoadErrorCode =
  /** The directory does not exist, is not a directory, or a file in it cannot be read. */
  | "directory_unreadable"
  /** The directory holds no `*.cedar` file, or the files hold no policy at all. */
  | "no_policies"
  /** A `.cedar` file does not parse (or holds a template, which this engine does not link). */
  | "policy_syntax"
  /** Two policies share an id: an `@id` used twice, or an `@id` equal to another's `file:line`. */
  | "duplicate_policy_id"
  /** `entities.json` is not valid JSON or not valid Cedar entity JSON. */
  | "entities_invalid"
  /** The engine was closed; nothing more is loaded. */
  | "closed";

/** Where in the policy directory an error sits. Lines and columns are 1-based. */
export interface SourceLocation {
  file: string;
  line?: number;
  column?: number;
}

/**
 * A policy directory that cannot be used. The message starts with `file:line:column: ` (as
 * much of it as is known), the way compilers print it, so an editor can jump to it.
 * Messages quote policy text and entity data, never tokens or credentials (neither is
 * ever given to the policy engine).
 */
export class PolicyLoadError extends Error {
  override readonly name = "PolicyLoadError";
  readonly code: PolicyLoadErrorCode;
  /** The file (or the directory itself), as the path was given to `loadPolicyEngine`. */
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  /** The message without its location prefix. */
  readonly detail: string;

  constructor(code: PolicyLoadErrorCode, where: SourceLocation, detail: string, options?: { cause?: unknown }) {
    super(`${formatLocation(where)}: ${detail}`, options);
    this.code = code;
    this.file = where.file;
    if (where.line !== undefined) this.line = where.line;
    if (where.column !== undefined) this.column = where.column;
    this.detail = detail;
  }
}

/** `file`, `file:line` or `file:line:column`. */
export function formatLocation(where: SourceLocation): string {
  let s = where.file;
  if (where.line !== undefined) {
    s += `:${where.line}`;
    if (where.column !== undefined) s += `:${where.column}`;
  }
  return s;
}

/** Cedar pretty-prints JSON into some messages; an error message should stay one line. */
export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ");
}
