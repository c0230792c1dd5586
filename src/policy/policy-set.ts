import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

import { PolicyLoadError } from "./errors.js";

/** File beside the policies that holds the entities (groups, attributes). Optional. */
export const ENTITIES_FILE = "entities.json";

/** Policies are the files with this suffix directly inside the directory. */
export const POLICY_FILE_SUFFIX = ".cedar";

/** Length of a policy version in hex digits (64 bits of the content's sha256). */
export const POLICY_VERSION_HEX_DIGITS = 16;

/**
 * A policy set as files, before parsing: what a directory holds and what `capvend policy
 * push` distributes. Only `*.cedar` files and `entities.json` belong in it.
 */
export interface PolicyFiles {
  /** File name (no directory) → its text. */
  readonly files: Readonly<Record<string, string>>;
}

/** Does this file name belong in a policy set? Dot files are editor debris. */
export function isPolicySetFile(name: string): boolean {
  return !name.startsWith(".") && !name.includes("/") && (name.endsWith(POLICY_FILE_SUFFIX) || name === ENTITIES_FILE);
}

/**
 * The version of a policy set: a content hash over its file names and texts (sorted by
 * name), so the same set has the same version on every replica whether it came from a
 * directory or from the NATS policy bucket. 16 hex digits.
 */
export function policyVersionOf(set: PolicyFiles): string {
  const hash = createHash("sha256");
  for (const name of Object.keys(set.files).sort()) {
    hash.update(name, "utf8");
    hash.update("\0");
    hash.update(set.files[name]!, "utf8");
    hash.update("\0");
  }
  return hash.digest("hex").slice(0, POLICY_VERSION_HEX_DIGITS);
}

/**
 * Reads the policy set files of a directory: every `*.cedar` file directly inside it and
 * `entities.json` if present (symlinks count: Kubernetes mounts ConfigMap files as symlinks).
 * A byte-order mark is dropped (Cedar does not skip one). Parsing is left to the caller.
 *
 * @throws PolicyLoadError (`directory_unreadable`) naming the directory or file
 */
export async function readPolicyFiles(dir: string): Promise<PolicyFiles> {
  let names: string[];
  try {
    const dirents = await readdir(dir, { withFileTypes: true });
    names = dirents
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && isPolicySetFile(d.name))
      .map((d) => d.name)
      .sort();
  } catch (e) {
    throw unreadable(dir, e, "policy directory");
  }
  const texts = await Promise.all(names.map((n) => readText(join(dir, n))));
  return { files: Object.fromEntries(names.map((n, i) => [n, texts[i]!])) };
}

async function readText(path: string): Promise<string> {
  try {
    const text = await readFile(path, "utf8");
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch (e) {
    throw unreadable(path, e, "file");
  }
}

function unreadable(path: string, e: unknown, what: string): PolicyLoadError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const detail =
    code === "ENOENT"
      ? `${what} does not exist`
      : code === "ENOTDIR"
        ? `${what} is not a directory`
        : `cannot read ${what}: ${(e as Error | undefined)?.message ?? String(e)}`;
  return new PolicyLoadError("directory_unreadable", { file: path }, detail, { cause: e });
}
