import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { TokenSchema, type Token } from "../gen/capvend/v1/vending_pb.js";
import type { MintedToken } from "../tokens/mint.js";

/** The wire form of a minted token. */
export function tokenMessage(t: MintedToken): Token {
  return create(TokenSchema, {
    tokenId: t.jti,
    accessToken: t.jwt,
    resource: t.claims.aud,
    scopes: t.claims.scope.split(" "),
    issuedAt: timestampFromMs(t.claims.iat * 1000),
    expiresAt: timestampFromMs(t.expiresAtMs),
  });
}
