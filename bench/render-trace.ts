/**
 * Renders the spans of one real agent session as an SVG waterfall for docs/observability.md:
 * a server on port 0 with in-memory span export runs StartSession (continuing an
 * orchestrator's traceparent), IssueToken, a denied IssueToken, a WatchSession whose 3 s token
 * renews, Revoke and EndSession; the picture is drawn from the spans that came out.
 *
 *   npm run build && node dist/bench/render-trace.js [out.svg]   (default docs/trace-session.svg)
 *
 * It also prints the span tree as text.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { hrTimeToMilliseconds } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { createTelemetry } from "../src/telemetry/telemetry.js";
import { ORCHESTRATOR_TOKEN, startHarness } from "../test/helpers/harness.js";
import { collect } from "../test/helpers/stream-collector.js";
import { clientWith } from "../test/telemetry/helpers.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", fileURLToPath(import.meta.url).includes(`${path.sep}dist${path.sep}`) ? ".." : ".");

/** Runs the session and returns every span it produced, and the orchestrator's trace id. */
async function recordSession(): Promise<{ spans: ReadableSpan[]; callerTrace: string }> {
  const exporter = new InMemorySpanExporter();
  const telemetry = createTelemetry({ serviceName: "capvend", spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const h = await startHarness({ telemetry });
  const callerTrace = randomBytes(16).toString("hex");
  try {
    const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN, { traceparent: `00-${callerTrace}-${randomBytes(8).toString("hex")}-01` });
    const s = await orchestrator.startSession({
      agentId: "sales-bot",
      userId: "alice",
      grants: [
        { resource: "salesforce", scopes: ["read", "write"] },
        { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } },
      ],
    });
    const runtime = clientWith(h.url, s.sessionCredential, { protocol: "grpc" });
    const watch = collect(runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }] }));
    await watch.until(() => watch.tokens().length >= 1, "the first stream token");
    const { token } = await runtime.issueToken({ resource: "salesforce", scopes: ["read", "write"] });
    // The report bot's warehouse tokens are capped at 900 s by policy: a one-hour one is denied.
    const reporter = await orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    await clientWith(h.url, reporter.sessionCredential, { protocol: "grpc" }).issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } }).catch(() => undefined);
    await watch.until(() => watch.tokens().length >= 2, "a renewal");
    await orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "task step done" });
    await orchestrator.endSession({ sessionId: s.sessionId, reason: "task done" });
    await watch.done;
    await telemetry.forceFlush();
    return { spans: exporter.getFinishedSpans(), callerTrace };
  } finally {
    await h.close();
    await telemetry.shutdown();
  }
}

const startMs = (s: ReadableSpan) => hrTimeToMilliseconds(s.startTime);
const durMs = (s: ReadableSpan) => hrTimeToMilliseconds(s.duration);
const key = (s: ReadableSpan) => `${s.spanContext().traceId}/${s.spanContext().spanId}`;
const short = (s: ReadableSpan) => s.name.replace("capvend.v1.VendingService/", "");

function childrenIndex(spans: ReadableSpan[]): Map<string, ReadableSpan[]> {
  const m = new Map<string, ReadableSpan[]>();
  for (const s of spans) {
    if (!s.parentSpanContext) continue;
    const k = `${s.spanContext().traceId}/${s.parentSpanContext.spanId}`;
    m.set(k, [...(m.get(k) ?? []), s].sort((a, b) => startMs(a) - startMs(b)));
  }
  return m;
}

/** Depth-first rows of one tree. */
function tree(root: ReadableSpan, kids: Map<string, ReadableSpan[]>, depth = 0): { span: ReadableSpan; depth: number }[] {
  return [{ span: root, depth }, ...(kids.get(key(root)) ?? []).flatMap((c) => tree(c, kids, depth + 1))];
}

const SHOWN = [
  "capvend.resource",
  "capvend.token.scopes",
  "capvend.policy.action",
  "capvend.policy.decision",
  "capvend.policy.ids",
  "capvend.issue.kind",
  "capvend.audit.event",
  "capvend.revocation.kind",
  "rpc.system",
  "rpc.grpc.status_code",
  "capvend.error.reason",
];

function attrText(s: ReadableSpan): string {
  const parts: string[] = [];
  for (const k of SHOWN) {
    const v = s.attributes[k];
    if (v === undefined) continue;
    parts.push(`${k.replace(/^capvend\./, "")}=${Array.isArray(v) ? v.join(",") : String(v)}`);
  }
  const all = parts.join("  ");
  return all.length > 115 ? `${all.slice(0, 114)}…` : all;
}

const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#af7aa1", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"];

/** Draws the session timeline and three waterfalls; returns the SVG text. */
function render(spans: ReadableSpan[], callerTrace: string): string {
  const kids = childrenIndex(spans);
  const roots = spans.filter((s) => !s.parentSpanContext || s.parentSpanContext.isRemote).sort((a, b) => startMs(a) - startMs(b));
  const traceColor = new Map<string, string>();
  for (const r of roots) if (!traceColor.has(r.spanContext().traceId)) traceColor.set(r.spanContext().traceId, PALETTE[traceColor.size % PALETTE.length]!);
  const colorOf = (s: ReadableSpan) => traceColor.get(s.spanContext().traceId) ?? "#888";

  const W = 1400;
  // Panel 1 labels carry the trace id; the waterfalls only span names.
  const LABEL1 = 400;
  const LABEL = 290;
  const BAR = W - LABEL1 - 130;
  const ROW = 22;
  const out: string[] = [];
  let y = 20;
  const text = (x: number, yy: number, t: string, extra = "") => out.push(`<text x="${x}" y="${yy}" ${extra}>${esc(t)}</text>`);

  text(10, y + 8, "capvend: the spans of one agent session (recorded from a real run, bench/render-trace.ts)", 'font-size="16" font-weight="bold"');
  y += 34;

  // Panel 1: every trace on one time axis.
  const t0 = Math.min(...roots.map(startMs));
  const t1 = Math.max(...roots.map((r) => startMs(r) + durMs(r)));
  const xAt = (ms: number) => LABEL1 + ((ms - t0) / (t1 - t0)) * BAR;
  text(10, y, "1. The session on one time axis: each row is the root of its own trace (colour = trace id)", 'font-size="13" font-weight="bold"');
  y += 12;
  const axisY = y + roots.length * ROW + 8;
  for (let s = 0; s <= Math.ceil((t1 - t0) / 1000); s++) {
    const x = xAt(t0 + s * 1000);
    if (x > LABEL1 + BAR + 1) break;
    out.push(`<line x1="${x}" y1="${y}" x2="${x}" y2="${axisY}" stroke="#ddd"/>`);
    text(x - 6, axisY + 14, `${s}s`, 'font-size="11" fill="#666"');
  }
  const rowY = new Map<string, number>();
  roots.forEach((r, i) => {
    const ry = y + i * ROW;
    rowY.set(key(r), ry);
    const trace = r.spanContext().traceId;
    const who = trace === callerTrace ? "orchestrator's trace" : r.name === "capvend.renew" ? "own trace, linked" : "own trace";
    text(10, ry + 15, `${short(r)}`, 'font-size="12"');
    text(140, ry + 15, `${trace.slice(0, 8)}… (${who})`, 'font-size="11" fill="#555" font-family="monospace"');
    const x = xAt(startMs(r));
    const w = Math.max(3, xAt(startMs(r) + durMs(r)) - x);
    out.push(`<rect x="${x}" y="${ry + 4}" width="${w}" height="${ROW - 8}" rx="2" fill="${colorOf(r)}"${r.status.code === 2 ? ' stroke="#c00" stroke-width="2"' : ""}/>`);
    text(x + w + 4, ry + 15, `${durMs(r) < 10 ? durMs(r).toFixed(2) : Math.round(durMs(r))} ms${r.status.code === 2 ? "  ERROR " + String(r.attributes["capvend.error.reason"] ?? "") : ""}`, 'font-size="10" fill="#333"');
  });
  // Links: renewal → the WatchSession span it belongs to.
  for (const r of roots) {
    for (const l of r.links) {
      const target = roots.find((o) => o.spanContext().spanId === l.context.spanId);
      if (!target) continue;
      const x1 = xAt(startMs(r));
      const y1 = rowY.get(key(r))! + ROW / 2;
      const y2 = rowY.get(key(target))! + ROW / 2;
      out.push(`<path d="M${x1},${y1} C${x1 - 40},${y1} ${x1 - 40},${y2} ${x1},${y2 + 5}" fill="none" stroke="#333" stroke-dasharray="4 3" marker-end="url(#arrow)"/>`);
      text(x1 - 70, (y1 + y2) / 2, "link", 'font-size="10" fill="#333"');
    }
  }
  y = axisY + 40;

  // Panels 2-4: waterfalls of single traces, each on its own ms axis.
  const issue = roots.find((r) => short(r) === "IssueToken" && r.status.code !== 2);
  const denied = roots.find((r) => short(r) === "IssueToken" && r.status.code === 2);
  const renew = roots.find((r) => r.name === "capvend.renew");
  const panels: [string, ReadableSpan | undefined][] = [
    ["2. IssueToken: the RPC span, the issuance, one policy decision per scope, the signature, the audit append", issue],
    ["3. A denied IssueToken: policy says deny (the report bot's tokens are capped at 900 s), nothing is minted, the denial is audited", denied],
    ["4. A renewal: a root span of its own trace, linked to the WatchSession span", renew],
  ];
  for (const [title, root] of panels) {
    if (!root) continue;
    const rows = tree(root, kids);
    const a = startMs(root);
    const total = Math.max(...rows.map((r) => startMs(r.span) + durMs(r.span) - a));
    const BAR2 = 330;
    const xOf = (ms: number) => LABEL + (ms / total) * BAR2;
    text(10, y, title, 'font-size="13" font-weight="bold"');
    y += 12;
    rows.forEach(({ span, depth }, i) => {
      const ry = y + i * ROW;
      text(10 + depth * 16, ry + 15, short(span), `font-size="12"${span.status.code === 2 ? ' fill="#c00"' : ""}`);
      const x = xOf(startMs(span) - a);
      const w = Math.max(2, (durMs(span) / total) * BAR2);
      out.push(`<rect x="${x}" y="${ry + 5}" width="${w}" height="${ROW - 10}" rx="2" fill="${colorOf(span)}" opacity="${1 - depth * 0.15}"/>`);
      text(LABEL + BAR2 + 8, ry + 15, `${durMs(span).toFixed(3)} ms`, 'font-size="10" fill="#333" font-family="monospace"');
      text(LABEL + BAR2 + 78, ry + 15, attrText(span), 'font-size="10" fill="#555" font-family="monospace"');
    });
    y += rows.length * ROW + 10;
    text(LABEL, y + 4, `0`, 'font-size="10" fill="#666"');
    text(LABEL + BAR2 - 40, y + 4, `${total.toFixed(2)} ms`, 'font-size="10" fill="#666"');
    y += 30;
  }

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...out,
    `</svg>`,
  ].join("\n");
}

/** Prints the span tree of every trace as indented text. */
function printTree(spans: ReadableSpan[]): void {
  const kids = childrenIndex(spans);
  const roots = spans.filter((s) => !s.parentSpanContext || s.parentSpanContext.isRemote).sort((a, b) => startMs(a) - startMs(b));
  for (const r of roots) {
    for (const { span, depth } of tree(r, kids)) {
      const link = span.links.length > 0 ? `  (link → ${span.links[0]!.context.spanId})` : "";
      process.stdout.write(`${"  ".repeat(depth)}${span.name}  ${durMs(span).toFixed(3)} ms  ${attrText(span)}${link}\n`);
    }
  }
}

/** Records a session, writes the SVG, prints the tree. */
export async function main(out = path.join(ROOT, "docs", "trace-session.svg")): Promise<void> {
  const { spans, callerTrace } = await recordSession();
  printTree(spans);
  await writeFile(out, render(spans, callerTrace) + "\n");
  process.stdout.write(`wrote ${out} (${spans.length} spans)\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv[2]);
  process.exit(0);
}
