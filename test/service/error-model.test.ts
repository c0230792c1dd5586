import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  asFault,
  CapvendError,
  capvendError,
  codeOf,
  ERROR_DOMAIN,
  errorInfoOf,
  errorTypeOf,
  fault,
  FAULTS,
  isFault,
  isFaultError,
  REASONS,
  reasonOf,
  toWireError,
  wireReasonOf,
  type ErrorCode,
  type Fault,
} from "../../src/errors.js";
import { ErrorReason } from "../../src/gen/capvend/v1/errors_pb.js";

/** Text a fault may carry for the log, which must never reach a caller. */
const SECRET_DETAIL = "audit write failed: /var/lib/capvend/audit/000001.log EIO ses_AAAAAAAAAAAAAAAAAAAAAA.secret";

const ALL: ErrorCode[] = [...REASONS, ...FAULTS];

describe("the closed union of error codes", () => {
  it("covers every contract reason once, and no fault shares a reason's name", () => {
    const contract = Object.keys(ErrorReason).filter((k) => Number.isNaN(Number(k)) && k !== "ERROR_REASON_UNSPECIFIED");
    expect([...REASONS].sort()).toEqual(contract.sort());
    expect(new Set(ALL).size).toBe(ALL.length);
    for (const f of FAULTS) expect(isFault(f), f).toBe(true);
    for (const r of REASONS) expect(isFault(r), r).toBe(false);
  });

  it.each(ALL.map((c) => [c]))("%s maps to exactly one wire code and reason", (code) => {
    const err = new CapvendError(code, SECRET_DETAIL);
    const wire = toWireError(err);
    const reason = wireReasonOf(code);
    expect(REASONS).toContain(reason);
    expect(wire.code).toBe(codeOf(reason));
    const info = errorInfoOf(wire);
    expect(info).toMatchObject({ reason, domain: ERROR_DOMAIN });
    expect(reasonOf(wire)).toBe(reason);
    // The mapping is a function of the code alone: mapping again changes nothing.
    const again = toWireError(wire);
    expect(again.code).toBe(wire.code);
    expect(errorInfoOf(again)?.reason).toBe(reason);
    // Before the mapping, the error already carries the same code and reason (so any code
    // that reads it early, such as the decision log, sees what the caller will see).
    expect(err.code).toBe(wire.code);
    expect(err.reason).toBe(reason);
  });

  it.each(REASONS.map((r) => [r]))("reason %s keeps its caller-facing message", (reason) => {
    const err = capvendError(reason, "resource: must be a known resource", { field: "resource" });
    const wire = toWireError(err);
    expect(wire).toBe(err);
    expect(wire.rawMessage).toBe("resource: must be a known resource");
    expect(errorInfoOf(wire)?.metadata).toEqual({ field: "resource" });
  });

  it.each(FAULTS.map((f) => [f]))("fault %s never exposes its own message, and keeps it as the cause", (code) => {
    const err = fault(code, SECRET_DETAIL, { cause: new Error("EIO") });
    const wire = toWireError(err);
    expect(wire).not.toBe(err);
    for (const text of [wire.rawMessage, wire.message, JSON.stringify(errorInfoOf(wire))]) {
      expect(text).not.toContain("EIO");
      expect(text).not.toContain("ses_");
      expect(text).not.toContain("/var/lib");
    }
    expect(errorInfoOf(wire)?.metadata).toEqual({});
    expect(wire.cause).toBe(err);
    // Fixed per code: two different details give one message.
    expect(toWireError(fault(code, "something else entirely")).rawMessage).toBe(wire.rawMessage);
  });

  it("sends internal faults as INTERNAL and dependency faults as retryable UNAVAILABLE", () => {
    const wire = (f: Fault) => toWireError(fault(f, "x"));
    for (const f of ["audit_event_refused", "audit_log_corrupt", "audit_gap"] as const) expect(wire(f).code, f).toBe(Code.Internal);
    for (const f of ["audit_unavailable", "session_store_unavailable", "revocation_unavailable", "nats_unavailable", "backend_closed"] as const) {
      expect(wire(f).code, f).toBe(Code.Unavailable);
    }
    for (const f of FAULTS.filter((c) => c.startsWith("token_"))) expect(wire(f).code, f).toBe(Code.Unauthenticated);
  });

  it("adds a fault's outcome to the fixed message", () => {
    expect(toWireError(fault("audit_unavailable", SECRET_DETAIL, { outcome: "nothing was issued" })).rawMessage).toBe(
      "the audit log is unavailable, so nothing was issued; retry later",
    );
    expect(toWireError(fault("session_store_unavailable", SECRET_DETAIL)).rawMessage).toBe("the session store is unavailable; retry");
  });

  it("turns anything that is not a ConnectError into INTERNAL with a fixed message", () => {
    const wire = toWireError(new Error(SECRET_DETAIL));
    expect(wire.code).toBe(Code.Internal);
    expect(errorInfoOf(wire)?.reason).toBe("INTERNAL");
    expect(wire.rawMessage).not.toContain("EIO");
    expect(toWireError("a string").code).toBe(Code.Internal);
  });

  it("gives a ConnectError raised outside capvend an ErrorInfo by its code, message unchanged", () => {
    const wire = toWireError(new ConnectError("body does not decode", Code.InvalidArgument));
    expect(wire.rawMessage).toBe("body does not decode");
    expect(errorInfoOf(wire)?.reason).toBe("INVALID_ARGUMENT");
  });
});

describe("asFault names the dependency that failed", () => {
  it("wraps a plain error and a lower layer's fault, keeping them as the cause", () => {
    const plain = new Error("store down");
    const a = asFault("session_store_unavailable", plain);
    expect(a.errorCode).toBe("session_store_unavailable");
    expect(a.cause).toBe(plain);
    expect(a.rawMessage).toBe("store down");

    const nats = fault("nats_unavailable", "kv get: no answer from NATS within 2000 ms");
    const b = asFault("revocation_unavailable", nats);
    expect(b.errorCode).toBe("revocation_unavailable");
    expect(b.reason).toBe("REVOCATION_UNAVAILABLE");
    expect(b.rawMessage).toBe("kv get: no answer from NATS within 2000 ms");
    expect(b.cause).toBe(nats);
  });

  it("lets a caller-facing refusal pass unchanged", () => {
    const refusal = capvendError("SESSION_NOT_FOUND", 'session_id: no session "x"');
    expect(asFault("session_store_unavailable", refusal)).toBe(refusal);
  });

  it("is recognised by code", () => {
    const err = fault("audit_gap", "x");
    expect(isFaultError(err)).toBe(true);
    expect(isFaultError(err, "audit_gap")).toBe(true);
    expect(isFaultError(err, "audit_unavailable")).toBe(false);
    expect(isFaultError(capvendError("INTERNAL", "x"))).toBe(false);
    expect(isFaultError(new Error("x"))).toBe(false);
  });
});

describe("error labels for telemetry", () => {
  it("are the domain code for a CapvendError and the class name otherwise", () => {
    expect(errorTypeOf(fault("audit_unavailable", "x"))).toBe("audit_unavailable");
    expect(errorTypeOf(capvendError("SCOPE_DENIED", "x"))).toBe("SCOPE_DENIED");
    expect(errorTypeOf(new TypeError("x"))).toBe("TypeError");
  });
});
