/**
 * Owner-only permissions for everything the audit log and the embedded state keep: the data
 * directory and its sub-directories 0700, files 0600, whatever mode they had before (the log
 * names users, agents and sessions). A looser mode found on disk is tightened and reported.
 */
import { chmod, mkdir, stat } from "node:fs/promises";

/** Mode of the data directory, `audit/` and `state/`: owner only. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of every audit and state file: owner read/write only. */
export const PRIVATE_FILE_MODE = 0o600;

/** Called when a directory or file had a looser mode and was tightened. */
export type PermissionWarning = (message: string, details: { path: string; was: string; now: string }) => void;

const octal = (mode: number) => `0${(mode & 0o777).toString(8)}`;

/**
 * Creates `dir` (and parents) when missing and makes it 0700. The umask cannot widen it and
 * an existing looser directory is tightened, with a warning.
 */
export async function ensurePrivateDir(dir: string, warn?: PermissionWarning): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await tighten(dir, PRIVATE_DIR_MODE, warn);
}

/** Makes an existing file 0600, with a warning when it was looser. Missing files are ignored. */
export async function ensurePrivateFile(file: string, warn?: PermissionWarning): Promise<void> {
  await tighten(file, PRIVATE_FILE_MODE, warn);
}

async function tighten(path: string, mode: number, warn?: PermissionWarning): Promise<void> {
  const s = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (!s) return;
  const was = s.mode & 0o777;
  if (was === mode) return;
  await chmod(path, mode);
  // Only a mode that granted more than `mode` is worth a warning; a stricter one is just fixed.
  if (was & ~mode & 0o777) {
    warn?.(`${path} was ${octal(was)}, readable or writable by others; tightened to ${octal(mode)}`, { path, was: octal(was), now: octal(mode) });
  }
}
