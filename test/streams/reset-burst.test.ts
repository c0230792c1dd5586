/**
 * Clients that drop many busy streams of one connection at once.
 *
 * Streams reset soon after they were opened trip the rapid-reset limit, and the server cuts
 * the connection off. The cut-off must not take the server down with it: destroyed from
 * inside the reset's own 'close' event, a session whose other streams still had DATA queued
 * sent Node's HTTP/2 layer into a loop packing empty DATA frames, in one native call, with
 * memory growing by hundreds of MB a second and no signal answered (a reconnect storm's
 * client did exactly this). Streams held for a while and then dropped together (a runtime
 * abandoning its watches to reconnect elsewhere) are not abuse, and the connection stays.
 *
 * The server runs in a child process: if it hangs, the test fails on its memory passing a
 * bound (far above what it needs) rather than hanging the runner, and the child is killed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RAPID_RESET_MAX_AGE_MS } from "../../src/transport/http2-guard.js";
import { rssBytes as rss } from "../helpers/process-memory.js";

/** The child's resident memory past which it counts as runaway: about 10x what it needs. */
const RUNAWAY_RSS_BYTES = 1024 * 1024 * 1024;
/** Busy streams dropped at once: well past the fixture's limit of 20 resets a second. */
const STREAMS = 60;

const here = path.dirname(fileURLToPath(import.meta.url));
/** The fixture as vitest's global setup builds it into dist/ (this file may run from test/ or dist/test/). */
const fixture = path.resolve(here.includes(`${path.sep}dist${path.sep}`) ? here : path.join(here, "..", "..", "dist", "test", "streams"), "fixtures", "reset-burst-server.js");


/** Rejects once the process's memory passes the bound (and kills it); never resolves otherwise. */
function runaway(child: ChildProcess): { promise: Promise<never>; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const bytes = rss(child.pid!);
      if (bytes > RUNAWAY_RSS_BYTES) {
        child.kill("SIGKILL");
        reject(new Error(`server memory ran away: ${Math.round(bytes / 1048576)} MiB`));
      }
    }, 50);
  });
  return { promise, stop: () => clearInterval(timer) };
}

/** Opens a stream on `session`; resolves with the size of its first DATA chunk, rejects if the session closes first. */
function firstBytes(session: http2.ClientHttp2Session): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/watch" });
    req.once("data", (chunk: Buffer) => {
      resolve(chunk.length);
      req.close(http2.constants.NGHTTP2_CANCEL);
    });
    req.once("error", reject);
    req.once("close", () => reject(new Error("stream closed before any data")));
    req.end();
  });
}

/** STREAMS streams on one new connection; `flowing` resolves once each has had data. */
function openBusyStreams(port: number) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  let count = 0;
  let allFlowing!: () => void;
  const flowing = new Promise<void>((resolve) => (allFlowing = resolve));
  const streams = Array.from({ length: STREAMS }, () => {
    const req = session.request({ ":method": "POST", ":path": "/watch" });
    req.on("error", () => undefined);
    let seen = false;
    req.on("data", () => {
      if (!seen && (seen = true) && ++count === STREAMS) allFlowing();
    });
    req.end();
    return req;
  });
  return { session, streams, flowing };
}

describe("a burst of resets on busy streams", () => {
  let child: ChildProcess;
  let port: number;
  beforeAll(async () => {
    child = spawn(process.execPath, [fixture], { stdio: ["ignore", "pipe", "inherit"] });
    port = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout!.setEncoding("utf8");
      child.stdout!.on("data", (chunk: string) => {
        out += chunk;
        const m = /port (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`fixture exited (${code}) before listening`)));
    });
  });
  afterAll(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });

  it("does not count streams held past the rapid-reset age when they are dropped together", async () => {
    const { session, streams, flowing } = openBusyStreams(port);
    const watch = runaway(child);
    try {
      await Promise.race([flowing, watch.promise]);
      // Wait past the age under which a reset counts (a bound, not a measurement).
      await new Promise((r) => setTimeout(r, RAPID_RESET_MAX_AGE_MS + 200));
      for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
      // The same connection still serves (a cut-off would close it first: GOAWAY, then destroy).
      await expect(Promise.race([firstBytes(session), watch.promise])).resolves.toBeGreaterThan(0);
      expect(session.closed || session.destroyed).toBe(false);
    } finally {
      watch.stop();
      session.destroy();
    }
  });

  it("cuts a connection off when its streams are reset at once soon after opening, keeps serving with bounded memory, and exits on SIGTERM", async () => {
    const { session, streams, flowing } = openBusyStreams(port);
    const gone = new Promise<void>((resolve) => session.once("close", () => resolve()));
    const watch = runaway(child);
    try {
      await Promise.race([flowing, watch.promise]);
      // All in one tick: the frames leave together, and the server reads them in one go.
      for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
      await Promise.race([gone, watch.promise]);
      // The server still answers, on a new connection.
      const other = http2.connect(`http://127.0.0.1:${port}`);
      other.on("error", () => undefined);
      await expect(Promise.race([firstBytes(other), watch.promise])).resolves.toBeGreaterThan(0);
      other.destroy();
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      await expect(Promise.race([exit, watch.promise])).resolves.toBe(0);
    } finally {
      watch.stop();
      session.destroy();
    }
  });
});
