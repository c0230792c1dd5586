/**
 * The floor under `IssueToken` in `npm run bench -- peer`: Node's own servers around capvend's
 * minter and nothing else. It parses the request, mints the same Ed25519 JWT capvend mints
 * (`createMinter`), and encodes the same response message, with no authentication, policy,
 * audit record, telemetry, validation or limits. What capvend spends above this row is its
 * own work; what this row spends is what any Node server answering the same requests would.
 *
 * One port, like capvend: a connection opening with the HTTP/2 preface goes to a `node:http2`
 * server answering gRPC on the core stream API; anything else to a `node:http` server
 * answering Connect JSON. `StartSession` (which the peer benchmark's load calls to set up)
 * answers a fixed credential, which `IssueToken` never checks.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { mkdtemp } from "node:fs/promises";
import * as net from "node:net";
import os from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import { systemClock } from "../src/clock.js";
import {
  IssueTokenRequestSchema,
  IssueTokenResponseSchema,
  StartSessionResponseSchema,
  VendingService,
  type IssueTokenRequest,
} from "../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { tokenMessage } from "../src/service/token-message.js";
import { createMinter } from "../src/tokens/mint.js";

const HTTP2_PREFACE = "PRI * HTTP/2.0";
const TTL_MS = 5 * 60 * 1000;
const START_SESSION_PATH = `/${VendingService.typeName}/${VendingService.method.startSession.name}`;

/** Serves on 127.0.0.1:`port`; prints "listening" once it does. Runs until killed. */
export async function floorServer(port: number): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-peer-floor-"));
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock: systemClock, maxTokenTtlMs: 60 * 60 * 1000 });
  const minter = createMinter({ keyRing, issuer: "https://capvend.local", clock: systemClock });

  const respond = (req: IssueTokenRequest) => {
    const token = minter.mint({ agentId: "sales-bot", userId: "user-0", sessionId: "ses_floor", resource: req.resource, scopes: req.scopes, expiresAtMs: Date.now() + TTL_MS });
    return create(IssueTokenResponseSchema, { token: tokenMessage(token) });
  };
  const session = toBinary(StartSessionResponseSchema, create(StartSessionResponseSchema, { sessionId: "ses_floor", sessionCredential: "floor" }));

  const h1 = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      if (req.url === START_SESSION_PATH) {
        res.writeHead(200, { "content-type": "application/proto", "content-length": String(session.byteLength) });
        res.end(session);
        return;
      }
      const { resource, scopes } = JSON.parse(Buffer.concat(parts).toString("utf8")) as IssueTokenRequest;
      const body = Buffer.from(toJsonString(IssueTokenResponseSchema, respond(create(IssueTokenRequestSchema, { resource, scopes }))));
      res.writeHead(200, { "content-type": "application/json", "content-length": String(body.byteLength) });
      res.end(body);
    });
  });

  const h2 = http2.createServer();
  h2.on("stream", (stream) => {
    const parts: Buffer[] = [];
    stream.on("data", (c: Buffer) => parts.push(c));
    stream.on("end", () => {
      // One uncompressed message: a 5-byte prefix (flag, length) and the request.
      const frame = Buffer.concat(parts);
      const message = toBinary(IssueTokenResponseSchema, respond(fromBinary(IssueTokenRequestSchema, frame.subarray(5))));
      const out = Buffer.allocUnsafe(5 + message.byteLength);
      out[0] = 0;
      out.writeUInt32BE(message.byteLength, 1);
      out.set(message, 5);
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(out);
    });
  });

  const front = net.createServer((socket) => {
    socket.once("readable", () => {
      const head = socket.read() as Buffer | null;
      if (!head) return socket.destroy();
      socket.unshift(head);
      (head.toString("latin1", 0, HTTP2_PREFACE.length) === HTTP2_PREFACE ? h2 : h1).emit("connection", socket);
    });
  });
  front.listen(port, "127.0.0.1", () => process.stdout.write("listening\n"));
}
