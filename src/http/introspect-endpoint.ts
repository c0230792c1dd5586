import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextValues, createHandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Authenticator } from "../auth/authenticator.js";
import { toWireError } from "../errors.js";
import { principalKey, type Principal } from "../auth/principal.js";
import { IntrospectRequestSchema, VendingService } from "../gen/capvend/v1/vending_pb.js";
import type { HttpRequest, HttpResponse, HttpRoute } from "../transport/http-routes.js";

/** Path of the RFC 7662 token introspection endpoint. */
export const OAUTH_INTROSPECT_PATH = "/oauth2/introspect";

/** Largest request body accepted, in bytes: a token is at most 8 KiB, with room for the form. */
export const MAX_INTROSPECT_BODY_BYTES = 16 * 1024;

/** How long the client may take to send its body, ms. */
export const INTROSPECT_BODY_TIMEOUT_MS = 10_000;

/** The client authentication methods the endpoint accepts, as RFC 8414 names them. */
export const INTROSPECT_AUTH_METHODS = ["client_secret_basic", "bearer"] as const;

/**
 * `POST /oauth2/introspect`: RFC 7662 on the wire, for API gateways that speak it. The body
 * is `application/x-www-form-urlencoded` with `token` (and optionally `token_type_hint`);
 * the client authenticates with `Authorization: Bearer <credential>` or `Authorization:
 * Basic base64(<id>:<credential>)` (an orchestrator or resource server id and its token).
 * It answers what the Introspect RPC decides (same checks, same policy action), as
 * RFC 7662 JSON: `{"active": false}` when inactive; otherwise NumericDate `exp`, `iat`,
 * `nbf`, a space-separated `scope`, `client_id`, `sub`, `aud`, `iss`, `jti`, `token_type`,
 * `sid` and the RFC 8693 `act` claim.
 */
export function introspectRoute(opts: {
  authenticator: Authenticator;
  introspect: ServiceImpl<typeof VendingService>["introspect"];
}): HttpRoute {
  return {
    method: "POST",
    path: OAUTH_INTROSPECT_PATH,
    async handle(req, res) {
      let principal: Principal;
      try {
        principal = await authenticate(opts.authenticator, header(req, "authorization"));
      } catch (err) {
        return oauthError(res, 401, "invalid_client", err instanceof ConnectError ? toWireError(err).rawMessage : "client authentication failed");
      }
      if (principal.kind === "session") {
        return oauthError(res, 403, "unauthorized_client", "introspection needs an orchestrator or resource-server credential");
      }
      const type = (header(req, "content-type") ?? "").split(";", 1)[0]!.trim().toLowerCase();
      if (type !== "application/x-www-form-urlencoded") {
        return oauthError(res, 400, "invalid_request", "the body must be application/x-www-form-urlencoded");
      }
      let form: URLSearchParams;
      try {
        form = new URLSearchParams(await readBody(req));
      } catch (err) {
        return oauthError(res, (err as BodyError).status ?? 400, "invalid_request", (err as Error).message);
      }
      const tokens = form.getAll("token");
      if (tokens.length !== 1 || tokens[0] === "") return oauthError(res, 400, "invalid_request", 'exactly one non-empty "token" parameter is required');

      const ctx = createHandlerContext({
        service: VendingService,
        method: VendingService.method.introspect,
        protocolName: "rfc7662",
        requestMethod: "POST",
        url: OAUTH_INTROSPECT_PATH,
        contextValues: createContextValues().set(principalKey, principal),
      });
      let answer;
      try {
        answer = await opts.introspect(create(IntrospectRequestSchema, { token: tokens[0]!, tokenTypeHint: form.get("token_type_hint") ?? "" }), ctx);
      } catch (err) {
        const e = toWireError(err);
        if (e.code === Code.PermissionDenied) return oauthError(res, 403, "access_denied", e.rawMessage);
        if (e.code === Code.InvalidArgument) return oauthError(res, 400, "invalid_request", e.rawMessage);
        if (e.code === Code.Unavailable) return oauthError(res, 503, "temporarily_unavailable", e.rawMessage);
        throw err;
      }
      send(res, 200, rfc7662(answer as Parameters<typeof rfc7662>[0]));
    },
  };
}

type IntrospectAnswer = {
  active: boolean;
  scope?: string;
  clientId?: string;
  sub?: string;
  aud?: string;
  iss?: string;
  jti?: string;
  tokenType?: string;
  exp?: { seconds: bigint; nanos: number };
  iat?: { seconds: bigint; nanos: number };
  nbf?: { seconds: bigint; nanos: number };
  sid?: string;
  actSub?: string;
};

/** The RPC's answer as RFC 7662 JSON: only `active` when inactive. */
function rfc7662(a: IntrospectAnswer): Record<string, unknown> {
  if (!a.active) return { active: false };
  const numericDate = (t: IntrospectAnswer["exp"]) => (t ? Math.floor(timestampMs(t as never) / 1000) : undefined);
  return {
    active: true,
    scope: a.scope,
    client_id: a.clientId,
    sub: a.sub,
    aud: a.aud,
    iss: a.iss,
    jti: a.jti,
    token_type: a.tokenType,
    exp: numericDate(a.exp),
    iat: numericDate(a.iat),
    nbf: numericDate(a.nbf),
    sid: a.sid,
    ...(a.actSub ? { act: { sub: a.actSub } } : {}),
  };
}

/** Bearer, or Basic with `<id>:<token>` (RFC 6749 §2.3.1 form-encodes both parts). */
async function authenticate(authenticator: Authenticator, authorization: string | undefined): Promise<Principal> {
  const basic = authorization && /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(authorization);
  if (!basic) return authenticator.authenticate(authorization ?? null);
  const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) throw new ConnectError("the Basic credentials must be <client id>:<secret>", Code.Unauthenticated);
  const id = formDecode(decoded.slice(0, colon));
  const secret = formDecode(decoded.slice(colon + 1));
  const principal = await authenticator.authenticate(`Bearer ${secret}`);
  // The secret must belong to the client it claims to be.
  if (principal.kind === "session" || principal.id !== id) throw new ConnectError("unknown client credentials", Code.Unauthenticated);
  return principal;
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replaceAll("+", " "));
  } catch {
    return s;
  }
}

type BodyError = Error & { status?: number };

function readBody(req: HttpRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (status: number, message: string) => {
      cleanup();
      reject(Object.assign(new Error(message), { status }));
    };
    const timer = setTimeout(() => fail(408, "the request body did not arrive in time"), INTROSPECT_BODY_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_INTROSPECT_BODY_BYTES) fail(413, `the request body must be at most ${MAX_INTROSPECT_BODY_BYTES} bytes`);
      else chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks).toString("utf8"));
    };
    const onError = () => fail(400, "the request body could not be read");
    const cleanup = () => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

function header(req: HttpRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function send(res: HttpResponse, status: number, body: Record<string, unknown>, extra: Record<string, string> = {}): void {
  // RFC 7662 §2.2 / RFC 6749 §5.1: never cached.
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache", ...extra });
  res.end(JSON.stringify(body));
}

function oauthError(res: HttpResponse, status: number, error: string, description: string): void {
  const extra: Record<string, string> = status === 401 ? { "www-authenticate": 'Basic realm="capvend", Bearer realm="capvend"' } : {};
  send(res, status, { error, error_description: description }, extra);
}
