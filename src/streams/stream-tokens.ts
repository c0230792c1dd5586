import type { Token } from "../gen/capvend/v1/vending_pb.js";
import type { GrantSpec, SessionRecord } from "../backends/types.js";

/** Which stream a token is minted for: enough to name it in audit records and spans. */
export interface StreamRef {
  /** The stream's id on this replica (`capvend.stream.id`). */
  readonly id: number;
  /** The session record the call authenticated with (one fresh object per call). */
  readonly session: SessionRecord;
}

/** A token minted for a stream, as the stream keeps and sends it. */
export interface StreamToken {
  readonly jti: string;
  /** `iat`, whole seconds. */
  readonly issuedAtSec: number;
  /** Mint time, ms since the epoch. */
  readonly issuedAtMs: number;
  /** Expiry, ms since the epoch (already clipped to the session's end). */
  readonly expiresAtMs: number;
  /** The wire form sent in `token_issued`. */
  readonly message: Token;
}

/**
 * Where a stream's tokens come from: the one issuance path (grants, policy, mint, audit
 * record) behind the service. Rejects with the caller-facing error when the grant is refused
 * or the audit log is away; the stream decides what a refusal means for it.
 */
export interface StreamTokens {
  /** Mints the next token of `grant`: the first of the stream ("token.issued") or a renewal ("token.renewed"). */
  mint(stream: StreamRef, grant: GrantSpec, event: "token.issued" | "token.renewed"): Promise<StreamToken>;
}
