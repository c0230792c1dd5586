/** The metric instruments capvend records, created once per meter. */
import type { Counter, Gauge, Histogram, Meter } from "@opentelemetry/api";
import { ValueType } from "@opentelemetry/api";
import {
  METRIC_AUDIT_DURATION,
  METRIC_AUDIT_FAILURES,
  METRIC_ISSUANCE_DURATION,
  METRIC_REVOCATION_DELIVERY,
  METRIC_STREAMS_ACTIVE,
  METRIC_TOKENS_DENIED,
  METRIC_TOKENS_ISSUED,
  METRIC_TOKENS_RENEWED,
  METRIC_TOKENS_REVOKED,
} from "./attributes.js";

// Seconds. Issuance is sub-millisecond without audit and a few ms with fsync; a stuck audit
// sink makes it fail at its 2 s timeout, which the top buckets catch.
const LATENCY_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Every instrument, by what it measures. */
export interface Instruments {
  /** Tokens returned to a caller or pushed on a stream (first tokens; `renewed` counts renewals). Attribute: capvend.resource. */
  tokensIssued: Counter;
  /** Tokens minted to replace one about to expire. Attribute: capvend.resource. */
  tokensRenewed: Counter;
  /** Token requests refused by the session's grants or by policy. Attribute: capvend.resource. */
  tokensDenied: Counter;
  /** Revocations and session ends that took effect. Attributes: capvend.revocation.kind, capvend.resource (when the target is one). */
  tokensRevoked: Counter;
  /** Open WatchSession streams on this replica. */
  streamsActive: Gauge;
  /** One issuance (policy, mint, audit), seconds. Attributes: capvend.issue.kind, capvend.issue.outcome, capvend.resource. */
  issuanceDuration: Histogram;
  /** Revoke/EndSession received → event written on an affected stream, seconds. */
  revocationDelivery: Histogram;
  /** One audit append, seconds. Attribute: capvend.audit.outcome. */
  auditDuration: Histogram;
  /** Audit appends that failed or timed out. Attributes: error.type, capvend.audit.event. */
  auditFailures: Counter;
}

/** Creates the instruments on `meter` (a no-op meter gives no-op instruments). */
export function createInstruments(meter: Meter): Instruments {
  const seconds = (name: string, description: string) =>
    meter.createHistogram(name, { description, unit: "s", valueType: ValueType.DOUBLE, advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S } });
  const count = (name: string, description: string, unit: string) => meter.createCounter(name, { description, unit, valueType: ValueType.INT });
  return {
    tokensIssued: count(METRIC_TOKENS_ISSUED, "Tokens issued (IssueToken and the first token of each grant on a stream)", "{token}"),
    tokensRenewed: count(METRIC_TOKENS_RENEWED, "Tokens renewed on WatchSession streams", "{token}"),
    tokensDenied: count(METRIC_TOKENS_DENIED, "Token requests denied by grants or policy", "{request}"),
    tokensRevoked: count(METRIC_TOKENS_REVOKED, "Revocations (Revoke and EndSession) that took effect", "{revocation}"),
    streamsActive: meter.createGauge(METRIC_STREAMS_ACTIVE, { description: "Open WatchSession streams", unit: "{stream}", valueType: ValueType.INT }),
    issuanceDuration: seconds(METRIC_ISSUANCE_DURATION, "Time to issue one token: policy, mint and audit"),
    revocationDelivery: seconds(METRIC_REVOCATION_DELIVERY, "Time from a revocation being received to its event being written on a stream"),
    auditDuration: seconds(METRIC_AUDIT_DURATION, "Time for one audit append to become durable"),
    auditFailures: count(METRIC_AUDIT_FAILURES, "Audit appends that failed or timed out", "{append}"),
  };
}
