/**
 * sha256 as lowercase hex, the one implementation the audit chain and the credential checks
 * share. It sits on the issuance path several times per token, so it uses Node's one-shot
 * `crypto.hash` (Node 20.12 and later), which skips the Hash object of `createHash`; on an
 * older Node it falls back to `createHash`. Strings are hashed as UTF-8 either way.
 */
import * as crypto from "node:crypto";

type OneShot = (algorithm: string, data: string | Uint8Array, outputEncoding: "hex") => string;
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

/** sha256 of `data` (UTF-8 for strings) as 64 lowercase hex characters. */
export const sha256Hex: (data: string | Uint8Array) => string =
  typeof oneShot === "function" ? (data) => oneShot("sha256", data, "hex") : (data) => crypto.createHash("sha256").update(data).digest("hex");
