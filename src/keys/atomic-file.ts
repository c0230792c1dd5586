import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Suffix of in-flight temporary files; anything ending in it is debris from a crash. */
export const TEMP_SUFFIX = ".tmp";

/**
 * Replaces `path` with `data` so that a crash at any point leaves either the old file or the
 * new one, never a torn one: write a temp file beside it, fsync, rename over, fsync the
 * directory (the rename itself is only durable once the directory entry is).
 * `mode` is applied with fchmod as well as at creation, so the umask cannot widen it.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`);
  const fh = await open(tmp, "wx", mode);
  try {
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dir);
}

/** Makes creations, renames and deletions in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
