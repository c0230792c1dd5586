/**
 * Pieces the @capvend/client tests share: a transport factory that frees its connection, a
 * TCP proxy that can cut, refuse or silently stop forwarding, an HTTP API that records the
 * Authorization it receives, and waiting on the manager's events.
 */
import http from "node:http";
import net from "node:net";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { CredentialEvent, CredentialManager, TransportFactory } from "@capvend/client";

/** gRPC over HTTP/2; the connection is aborted when the manager replaces or closes it. */
export const grpcTransport: TransportFactory = (baseUrl) => {
  const sessionManager = new Http2SessionManager(baseUrl);
  return { transport: createGrpcTransport({ baseUrl, sessionManager }), close: () => sessionManager.abort() };
};

/** A TCP proxy in front of `target` whose connections a test can cut, refuse, or freeze (stop forwarding, keep open). */
export async function tcpProxy(target: string) {
  const { port: targetPort } = new URL(target);
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean }>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(Number(targetPort), "127.0.0.1");
    const pair = { client, upstream, frozen: false };
    pairs.add(pair);
    for (const s of [client, upstream]) {
      s.on("close", () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
      s.on("error", () => undefined);
    }
    // Forward unless frozen: a frozen connection swallows bytes both ways and closes nothing.
    client.on("data", (b) => pair.frozen || upstream.write(b));
    upstream.on("data", (b) => pair.frozen || client.write(b));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get connections() {
      return pairs.size;
    },
    /** Destroys every connection; with `refuse`, new ones are refused until allow(). */
    cut(refuse = false) {
      refusing = refuse;
      for (const p of pairs) p.client.destroy();
    },
    allow() {
      refusing = false;
    },
    /** Stops forwarding on every open connection without closing any (new ones forward). Returns how many. */
    freeze() {
      for (const p of pairs) p.frozen = true;
      return pairs.size;
    },
    /** Holds every open connection's bytes (both ways) without losing or closing anything, until resume(). */
    stall() {
      for (const p of pairs) {
        p.client.pause();
        p.upstream.pause();
      }
      return pairs.size;
    },
    /** Lets stalled connections flow again. */
    resume() {
      for (const p of pairs) {
        p.client.resume();
        p.upstream.resume();
      }
    },
    /** Open connections that are frozen. */
    get frozen() {
      return [...pairs].filter((p) => p.frozen).length;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const p of pairs) p.client.destroy();
      }),
  };
}

/** An HTTP API that records each request's Authorization and answers from `respond`. */
export async function recordingApi(respond: (auth: string | undefined, n: number) => number = () => 200) {
  const seen: (string | undefined)[] = [];
  const headers: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    headers.push(req.headers);
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const status = respond(req.headers.authorization, seen.length);
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(status === 200 ? `ok ${body}` : "no");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    headers,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Records every event of `m` from now on. */
export function recordEvents(m: CredentialManager) {
  const events: CredentialEvent[] = [];
  const waiters = new Set<() => void>();
  void (async () => {
    for await (const e of m.events()) {
      events.push(e);
      for (const w of [...waiters]) w();
    }
  })();
  return {
    events,
    /** Resolves with the first event (from index `from`) matching `pred`; rejects after `timeoutMs`. */
    async next<T extends CredentialEvent["type"]>(type: T, pred: (e: Extract<CredentialEvent, { type: T }>) => boolean = () => true, timeoutMs = 20_000, from = 0) {
      const find = () => events.slice(from).find((e): e is Extract<CredentialEvent, { type: T }> => e.type === type && pred(e as Extract<CredentialEvent, { type: T }>));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = find();
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no "${type}" event within ${timeoutMs} ms; saw ${JSON.stringify(events.map((e) => ("code" in e ? `${e.type}:${e.code}` : e.type)).slice(-12))}`);
        await new Promise<void>((r) => {
          const t = setTimeout(done, 200);
          function done() {
            clearTimeout(t);
            waiters.delete(done);
            r();
          }
          waiters.add(done);
        });
      }
    },
  };
}
