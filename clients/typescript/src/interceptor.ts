import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { TokenSource } from "./token-source.js";

/** Options of credentialInterceptor. */
export interface CredentialInterceptorOptions {
  /** Scopes the calls need (must be among the grant's); default the grant's. */
  scopes?: readonly string[];
  /** Header to set; default "authorization" (value "Bearer <token>"). */
  header?: string;
}

/**
 * A Connect interceptor that attaches the current token for `resource` to every call made
 * over the transport it is given to (any Transport: gRPC, gRPC-Web, Connect, Node or
 * browser). A unary call refused with UNAUTHENTICATED is sent once more with a token issued
 * just then; streams are not replayed.
 */
export function credentialInterceptor(source: TokenSource, resource: string, opts: CredentialInterceptorOptions = {}): Interceptor {
  const header = opts.header ?? "authorization";
  return (next) => async (req) => {
    req.header.set(header, `Bearer ${await source.getToken(resource, opts.scopes, { signal: req.signal })}`);
    if (req.stream) return next(req);
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated) throw err;
      req.header.set(header, `Bearer ${await source.freshToken(resource, opts.scopes, { signal: req.signal })}`);
      return next(req);
    }
  };
}
