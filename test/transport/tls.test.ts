import { mkdtemp, readFile, rm } from "node:fs/promises";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { ManualClock } from "../../src/clock.js";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, run, startTestServer } from "./test-routes.js";
import type { TestProbe } from "./test-routes.js";

// CI installs openssl: there a missing openssl fails the tests instead of skipping them.
const hasOpenssl = process.env.CI === "true" || (await run("openssl", ["version"])).code === 0;
const healthProto = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));

/** GET over HTTPS/1.1 trusting `ca`; resolves the status, body and negotiated ALPN protocol. */
function httpsGet(
  url: string,
  ca: Buffer,
  ALPNProtocols?: string[],
): Promise<{ status: number; body: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false, ...(ALPNProtocols ? { ALPNProtocols } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          alpn: (res.socket as import("node:tls").TLSSocket).alpnProtocol,
        }),
      );
    });
    req.on("error", reject);
  });
}

// node:crypto cannot create X.509 certificates, so the self-signed one comes from openssl.
describe.skipIf(!hasOpenssl)("TLS: h2 and HTTP/1.1 by ALPN on one port [skipped without openssl]", () => {
  let dir: string;
  let cert: Buffer;
  let key: Buffer;
  let server: TransportServer;
  let port: number;
  let probe: TestProbe;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "capvend-tls-"));
    const made = await run("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    expect(made.code, made.stderr).toBe(0);
    cert = await readFile(join(dir, "cert.pem"));
    key = await readFile(join(dir, "key.pem"));
    probe = createProbe();
    ({ server, port } = await startTestServer(probe, { tls: { cert, key } }));
  });
  afterAll(async () => {
    await server?.close(1000);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("serves gRPC over h2 negotiated by ALPN", async () => {
    const transport = createGrpcTransport({ baseUrl: `https://localhost:${port}`, nodeOptions: { ca: cert } });
    const res = await createClient(Health, transport).check({ service: "tls-grpc" });
    expect(res.status).toBe(ServingStatus.SERVING);
    expect(probe.calls.find((c) => c.service === "tls-grpc")).toMatchObject({ protocol: "grpc", httpVersion: "2.0" });
  });

  it("serves Connect over HTTPS/1.1", async () => {
    const transport = createConnectTransport({ baseUrl: `https://localhost:${port}`, httpVersion: "1.1", nodeOptions: { ca: cert } });
    const res = await createClient(Health, transport).check({ service: "tls-connect-h1" });
    expect(res.status).toBe(ServingStatus.SERVING);
    expect(probe.calls.find((c) => c.service === "tls-connect-h1")).toMatchObject({ protocol: "connect", httpVersion: "1.1" });
  });

  it("serves a plain route over HTTPS/1.1, with ALPN http/1.1 or without ALPN", async () => {
    const withAlpn = await httpsGet(`https://localhost:${port}/healthz`, cert, ["http/1.1"]);
    expect(withAlpn).toEqual({ status: 200, body: "ok 1.1", alpn: "http/1.1" });
    const withoutAlpn = await httpsGet(`https://localhost:${port}/healthz`, cert);
    expect(withoutAlpn).toEqual({ status: 200, body: "ok 1.1", alpn: false });
  });

  it("answers a @grpc/grpc-js client over TLS", async () => {
    const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const client = new pkg.grpc.health.v1.Health(`localhost:${port}`, grpc.credentials.createSsl(cert));
    try {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.Check({ service: "tls-grpc-js" }, (err: Error | null, v: { status: string }) => (err ? reject(err) : resolve(v))),
      );
      expect(res.status).toBe("SERVING");
    } finally {
      client.close();
    }
  });

  it("rejects a client that does not trust the certificate, without harm to the server", async () => {
    const err = await new Promise<Error>((resolve) =>
      https.get(`https://localhost:${port}/healthz`, { agent: false }, () => resolve(new Error("unexpected success"))).on("error", resolve),
    );
    expect(err.message).toMatch(/self.signed|certificate/i);
    const res = await httpsGet(`https://localhost:${port}/healthz`, cert);
    expect(res.status).toBe(200);
  });

  it("closes promptly with idle h2 and HTTPS/1.1 connections open", async () => {
    // A manual clock nobody advances: the close grace never runs out, so a close that resolves did not wait for it.
    const own = await startTestServer(createProbe(), { tls: { cert, key }, clock: new ManualClock() });
    const transport = createGrpcTransport({ baseUrl: `https://localhost:${own.port}`, nodeOptions: { ca: cert } });
    await createClient(Health, transport).check({ service: "" });
    const keepAlive = new https.Agent({ keepAlive: true, ca: cert });
    await new Promise<void>((resolve, reject) =>
      https.get(`https://localhost:${own.port}/healthz`, { agent: keepAlive }, (res) => res.resume().on("end", resolve)).on("error", reject),
    );
    expect(own.server.openConnections).toBeGreaterThanOrEqual(2);
    await own.server.close(10_000);
    expect(own.server.openConnections).toBe(0);
    keepAlive.destroy();
  });
});
