/**
 * Stream caps: one session cannot hold more than CAPVEND_MAX_STREAMS_PER_SESSION streams,
 * the replica no more than CAPVEND_MAX_STREAMS, and a burst of opens from one session does
 * not hold up another session's calls.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorInfoOf } from "../../src/errors.js";
import { loadConfig } from "../../src/config/config.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { waitFor } from "../helpers/wait.js";

let h: Harness;
const limits = { ...loadConfig({}).limits, maxStreamsPerSession: 4, maxStreams: 12 };

beforeAll(async () => {
  h = await startHarness({ settings: { limits } });
});
afterAll(async () => {
  await h?.close();
});

type Outcome = "open" | "limit" | "other";

/** Opens `n` WatchSession streams at once; resolves with how each one started. */
async function openStreams(runtime: Awaited<ReturnType<typeof startSalesSession>>["runtime"], n: number, abort: AbortController): Promise<Outcome[]> {
  return Promise.all(
    Array.from({ length: n }, async (): Promise<Outcome> => {
      try {
        for await (const m of runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, { signal: abort.signal })) {
          if (m.event.case === "tokenIssued") return "open";
        }
        return "other";
      } catch (err) {
        const e = ConnectError.from(err);
        return e.code === Code.ResourceExhausted && errorInfoOf(e)?.reason === "STREAM_LIMIT" ? "limit" : "other";
      }
    }),
  );
}

describe("stream caps", () => {
  it("refuses a session's streams past its cap with RESOURCE_EXHAUSTED (STREAM_LIMIT), while another session's IssueToken keeps being served", async () => {
    const a = await startSalesSession(h);
    const b = await startSalesSession(h);
    const served = async () => {
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        const { token } = await b.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
        expect(token?.resource).toBe("calendar");
        ids.push(token!.tokenId);
      }
      return ids;
    };
    const abort = new AbortController();
    const [outcomes, during] = await Promise.all([openStreams(a.runtime, 40, abort), served()]);
    expect(outcomes.filter((o) => o === "open")).toHaveLength(4);
    expect(outcomes.filter((o) => o === "limit")).toHaveLength(36);
    // Every call of the other session got its own token during the burst. How quickly is a
    // timing figure, measured by `npm run bench -- limits` (p99 with and without the burst).
    expect(new Set(during).size).toBe(40);
    abort.abort();
    await waitFor(() => h.server.hub.stats().streams === 0, "every stream to be unregistered");
  });

  it("refuses streams past the replica's cap, and serves again once streams close", async () => {
    const sessions = await Promise.all(Array.from({ length: 4 }, () => startSalesSession(h)));
    const abort = new AbortController();
    // 4 sessions x 4 streams = 16 asked for; the replica holds 12.
    const outcomes = (await Promise.all(sessions.map((s) => openStreams(s.runtime, 4, abort)))).flat();
    expect(outcomes.filter((o) => o === "open")).toHaveLength(12);
    expect(outcomes.filter((o) => o === "limit")).toHaveLength(4);
    abort.abort();
    await waitFor(() => h.server.hub.stats().streams === 0, "every stream to be unregistered");
    const again = await startSalesSession(h);
    let opened: Outcome[] = [];
    for (let i = 0; i < 50 && opened[0] !== "open"; i++) opened = await openStreams(again.runtime, 1, new AbortController());
    expect(opened).toEqual(["open"]);
  });
});
