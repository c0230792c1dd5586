import { Writable } from "node:stream";

/** A log destination that keeps every line in `lines`, for assertions and leak scans. */
export function memoryLogDestination(): { destination: Writable; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { destination, lines };
}
