import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { createTelemetry, type Telemetry } from "../../src/telemetry/telemetry.js";
import { AUDIT_HEALTH_SERVICE } from "../../src/telemetry/attributes.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

let h: Harness;
let telemetry: Telemetry;
beforeAll(async () => {
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  telemetry = createTelemetry({ metricReaders: [prometheus] });
  h = await startHarness({ telemetry, metrics: prometheus });
});
afterAll(async () => {
  await h?.close();
  await telemetry?.shutdown();
});

/** A plain form POST, as an API gateway sends it (HTTP/1.1 fetch). */
function introspect(body: string, authorization?: string, contentType = "application/x-www-form-urlencoded") {
  const headers: Record<string, string> = { "content-type": contentType };
  if (authorization) headers.authorization = authorization;
  return fetch(`${h.url}/oauth2/introspect`, { method: "POST", headers, body });
}
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

describe("POST /oauth2/introspect (RFC 7662)", () => {
  it("answers an active token with NumericDate exp/iat, space-separated scope, client_id, sub and act", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read", "write"] });
    const res = await introspect(form({ token: token!.accessToken, token_type_hint: "access_token" }), `Bearer ${GATEWAY_TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      active: true,
      scope: "read write",
      client_id: "sales-bot",
      sub: "user:alice",
      aud: "salesforce",
      iss: "https://capvend.local",
      jti: token!.tokenId,
      token_type: "Bearer",
      sid: s.sessionId,
      act: { sub: "agent:sales-bot" },
    });
    expect(body.exp).toBe(Number(token!.expiresAt!.seconds));
    expect(body.iat).toBe(Number(token!.issuedAt!.seconds));
    expect(Number.isInteger(body.exp) && Number.isInteger(body.iat) && Number.isInteger(body.nbf)).toBe(true);

    // Basic client authentication: the resource server's id and its token.
    const viaBasic = await introspect(form({ token: token!.accessToken }), basic("demo-gateway", GATEWAY_TOKEN));
    expect(((await viaBasic.json()) as { active: boolean }).active).toBe(true);

    // Revoked: exactly {"active": false}.
    await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "test" });
    const after = await introspect(form({ token: token!.accessToken }), `Bearer ${GATEWAY_TOKEN}`);
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual({ active: false });
  });

  it("answers {\"active\": false} for a token that is not one of ours", async () => {
    const res = await introspect(form({ token: "not-a-token" }), `Bearer ${ORCHESTRATOR_TOKEN}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ active: false });
  });

  it("refuses clients that do not authenticate, with the RFC 6749 error shape and no echo of what was sent", async () => {
    const none = await introspect(form({ token: "x" }));
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Basic");
    expect(((await none.json()) as { error: string }).error).toBe("invalid_client");
    const wrongId = await introspect(form({ token: "x" }), basic("someone-else", GATEWAY_TOKEN));
    expect(wrongId.status).toBe(401);
    const wrongSecret = await introspect(form({ token: "x" }), basic("demo-gateway", "not-the-token-0123456789"));
    expect(wrongSecret.status).toBe(401);
    const text = await wrongSecret.text();
    expect(text).not.toContain("not-the-token-0123456789");
    const s = await startSalesSession(h);
    const session = await introspect(form({ token: "x" }), `Bearer ${s.sessionCredential}`);
    expect(session.status).toBe(403);
    expect(await session.text()).not.toContain(s.sessionCredential.split(".")[1]!);
  });

  it("refuses bad requests with invalid_request", async () => {
    const json = await introspect(JSON.stringify({ token: "x" }), `Bearer ${GATEWAY_TOKEN}`, "application/json");
    expect(json.status).toBe(400);
    expect(((await json.json()) as { error: string }).error).toBe("invalid_request");
    const missing = await introspect(form({ nottoken: "x" }), `Bearer ${GATEWAY_TOKEN}`);
    expect(missing.status).toBe(400);
    const twice = await introspect("token=a&token=b", `Bearer ${GATEWAY_TOKEN}`);
    expect(twice.status).toBe(400);
    const huge = await introspect(form({ token: "a".repeat(20_000) }), `Bearer ${GATEWAY_TOKEN}`);
    expect(huge.status).toBe(413);
    const get = await fetch(`${h.url}/oauth2/introspect`);
    expect(get.status).toBe(405);
  });

  it("is advertised in the RFC 8414 metadata with the auth methods it accepts", async () => {
    const doc = (await (await fetch(`${h.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(doc.introspection_endpoint).toBe("https://capvend.local/oauth2/introspect");
    expect(doc.introspection_endpoint_auth_methods_supported).toEqual(["client_secret_basic", "bearer"]);
  });
});

describe("GET /metrics", () => {
  it("serves the OpenTelemetry metrics in Prometheus text format", async () => {
    const s = await startSalesSession(h);
    await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    const res = await fetch(`${h.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    const families = parsePrometheusTextFormat(text);
    const issued = families.find((f) => f.name === "capvend_tokens_issued_total");
    expect(issued?.type).toBe("COUNTER");
    const calendar = issued!.metrics.find((m) => m.labels?.capvend_resource === "calendar");
    expect(Number(calendar?.value)).toBeGreaterThanOrEqual(1);
    const duration = families.find((f) => f.name.startsWith("capvend_issuance_duration"));
    expect(duration?.type).toBe("HISTOGRAM");
    // Every non-comment line is a well-formed sample: name{labels} value.
    for (const line of text.split("\n").filter((l) => l && !l.startsWith("#"))) {
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (?:[-+0-9.eE]+|NaN|[+-]Inf)( -?\d+)?$/);
    }
  });
});

describe("GET /healthz and /readyz", () => {
  it("mirror grpc.health: the overall status, a service's, unknown services, and the policy version", async () => {
    const res = await fetch(`${h.url}/healthz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; services: Record<string, string>; policy: { version: string } };
    expect(body.status).toBe("SERVING");
    expect(body.services["capvend.v1.VendingService"]).toBe("SERVING");
    expect(body.policy.version).toBe(h.policy.state.policyVersion);
    expect((await fetch(`${h.url}/healthz?service=capvend.v1.VendingService`)).status).toBe(200);
    expect((await fetch(`${h.url}/healthz?service=no.such.Service`)).status).toBe(404);
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);

    // A part that issuance needs goes down: not ready, and its own check says so.
    h.server.health.setStatus(AUDIT_HEALTH_SERVICE, ServingStatus.NOT_SERVING);
    try {
      expect((await fetch(`${h.url}/readyz`)).status).toBe(503);
      expect((await fetch(`${h.url}/healthz?service=${AUDIT_HEALTH_SERVICE}`)).status).toBe(503);
    } finally {
      h.server.health.setStatus(AUDIT_HEALTH_SERVICE, ServingStatus.SERVING);
    }
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    expect((h.audit as MemoryAuditSink).records.length).toBeGreaterThan(0);
  });
});
