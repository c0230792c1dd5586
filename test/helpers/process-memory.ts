import { readFileSync } from "node:fs";

/** Resident memory of a process (VmRSS from /proc), in bytes; 0 once it has exited. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
