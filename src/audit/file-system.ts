/**
 * The few file operations the file sink needs, behind an interface so tests can make a write
 * fail, tear or hang without touching the real disk's behaviour.
 */
import { mkdir, open, readdir, stat, writeFile } from "node:fs/promises";

/** An open segment, written at its end. */
export interface AuditFileHandle {
  /** Appends all of `data` (looping over short writes). */
  append(data: Uint8Array): Promise<void>;
  /** fdatasync: file data (and the size) reach stable storage. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

/** File-system operations used by the file sink. */
export interface AuditFs {
  mkdirp(dir: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  size(path: string): Promise<number>;
  /** Reads `length` bytes at `position`. */
  read(path: string, position: number, length: number): Promise<Buffer>;
  /** Opens for appending, creating the file when missing. */
  openAppend(path: string): Promise<AuditFileHandle>;
  /** Creates `path` with `data` and syncs it (used to keep torn bytes aside). */
  writeNew(path: string, data: Uint8Array): Promise<void>;
  /** fsync on a directory, so a newly created file's name survives a crash. */
  syncDir(dir: string): Promise<void>;
}

/** `AuditFs` over `node:fs/promises`. */
export const nodeAuditFs: AuditFs = {
  async mkdirp(dir) {
    await mkdir(dir, { recursive: true });
  },
  list: (dir) => readdir(dir),
  async size(path) {
    return (await stat(path)).size;
  },
  async read(path, position, length) {
    const fh = await open(path, "r");
    try {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  },
  async openAppend(path) {
    // Owner only: the log names users, agents and sessions. fchmod too, as the umask filters open's mode.
    const fh = await open(path, "a", 0o600);
    await fh.chmod(0o600);
    return {
      async append(data) {
        let off = 0;
        while (off < data.length) {
          const { bytesWritten } = await fh.write(data, off, data.length - off);
          off += bytesWritten;
        }
      },
      datasync: () => fh.datasync(),
      truncate: (length) => fh.truncate(length),
      async size() {
        return (await fh.stat()).size;
      },
      close: () => fh.close(),
    };
  },
  async writeNew(path, data) {
    await writeFile(path, data, { flag: "wx", mode: 0o600 });
    const fh = await open(path, "r+");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async syncDir(dir) {
    const fh = await open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};
