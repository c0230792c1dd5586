import { setFlagsFromString } from "node:v8";

/**
 * Node 20.20's V8 can abort the process ("Fatal error … unreachable code", exit 133) when
 * it de-optimizes a JS→Wasm call it inlined, and cedar-wasm's `statefulIsAuthorized` on the
 * issuance hot path is such a call: under sustained load the process died in most runs.
 * Turning that one inlining off made it go away in every run, at no measurable cost. Set
 * before any policy decision runs (it only affects code optimized later).
 */
export const V8_WASM_INLINING_WORKAROUND = "--no-turbo-inline-js-wasm-calls";

setFlagsFromString(V8_WASM_INLINING_WORKAROUND);
