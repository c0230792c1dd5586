import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

/** A request as either server delivers it: HTTP/1.1 (`node:http`) or HTTP/2 (`node:http2` compat). */
export type HttpRequest = IncomingMessage | Http2ServerRequest;
/** A response as either server delivers it. */
export type HttpResponse = ServerResponse | Http2ServerResponse;
/** A Node request listener that works for both servers. */
export type RequestListener = (req: HttpRequest, res: HttpResponse) => void;

/**
 * A plain HTTP endpoint served beside the RPCs on the same port, e.g. GET
 * `/.well-known/jwks.json`. `path` is matched exactly, without the query string.
 */
export interface HttpRoute {
  method: "GET" | "POST";
  path: string;
  handle(req: HttpRequest, res: HttpResponse): void | Promise<void>;
}

/**
 * Builds the request listener: plain routes are matched first; everything else goes to
 * `next` (the Connect adapter, which answers 404 for unknown paths). A route path asked for
 * with another method gets 405. A route that throws or rejects gets a 500 (if nothing was
 * sent yet) and is reported to `onError`. Duplicate paths are rejected here, at start.
 */
export function createHttpRouteListener(
  routes: readonly HttpRoute[],
  next: RequestListener,
  onError: (error: unknown, route: HttpRoute) => void,
): RequestListener {
  const byPath = new Map<string, HttpRoute>();
  for (const route of routes) {
    if (!route.path.startsWith("/")) {
      throw new Error(`http route path must start with "/": ${JSON.stringify(route.path)}`);
    }
    if (byPath.has(route.path)) {
      throw new Error(`duplicate http route for path ${route.path}`);
    }
    byPath.set(route.path, route);
  }
  if (byPath.size === 0) return next;

  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const route = byPath.get(path);
    if (!route) {
      next(req, res);
      return;
    }
    if (req.method !== route.method) {
      res.writeHead(405, { allow: route.method });
      res.end();
      return;
    }
    // A client that aborts mid-request makes the request emit 'error'; without a listener
    // that would be an uncaught exception.
    req.on("error", () => {});
    const fail = (error: unknown) => {
      onError(error, route);
      if (!res.headersSent) {
        res.writeHead(500);
        res.end();
      } else if (!res.writableEnded) {
        res.destroy();
      }
    };
    try {
      const result = route.handle(req, res);
      if (result !== undefined) result.catch(fail);
    } catch (error) {
      fail(error);
    }
  };
}
