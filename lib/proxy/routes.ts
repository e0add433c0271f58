/**
 * Which paths the proxy answers itself (each named by an {@link OwnRoute},
 * whose handler `own.ts` finds) and which it forwards to vLLM (an
 * allow-list): a Map lookup on the hot path, a few prefix rules for paths
 * with an id. Odd paths (encoded slashes or dots, backslashes, empty
 * segments, over {@link MAX_PATH_LENGTH}) never match anything.
 *
 * @module
 */

/**
 * Longest path accepted; longer ones get 414.
 *
 * @example
 * ```ts
 * import { MAX_PATH_LENGTH, matchRoute } from "./routes.ts";
 * matchRoute("/" + "a".repeat(MAX_PATH_LENGTH)).kind; // "too_long"
 * ```
 */
export const MAX_PATH_LENGTH = 2048;

/**
 * An endpoint the proxy answers itself (never wakes the GPU).
 *
 * @example
 * ```ts
 * import type { OwnRoute } from "./routes.ts";
 * const route: OwnRoute = "healthz";
 * ```
 */
export type OwnRoute =
  | "healthz"
  | "readyz"
  | "metrics"
  | "models"
  | "admin_status"
  | "admin_load"
  | "admin_sleep"
  | "admin_unload_model"
  | "admin_unload";

/**
 * The result of {@link matchRoute}.
 *
 * @example
 * ```ts
 * import { matchRoute, type RouteMatch } from "./routes.ts";
 * const match: RouteMatch = matchRoute("/healthz"); // { kind: "own", route: "healthz", method: "GET" }
 * ```
 */
export type RouteMatch =
  | { kind: "own"; route: OwnRoute; method: string; param?: string }
  | {
    kind: "forward";
    method: string;
    /** Whether the request carries a body with a `model` (false: GET /v1/responses/{id} and similar). */
    hasBody: boolean;
    /** Whether the client may send its key as `x-api-key` (Anthropic-style /v1/messages). */
    xApiKey: boolean;
  }
  | { kind: "not_found" }
  | { kind: "too_long" };

const own = (route: OwnRoute, method: string): RouteMatch => ({ kind: "own", route, method });
const fwd = (method = "POST", xApiKey = false): RouteMatch => ({ kind: "forward", method, hasBody: true, xApiKey });

/** Exact paths: the proxy's own endpoints and vLLM's routes that take a body with `model`. */
const EXACT = new Map<string, RouteMatch>([
  ["/healthz", own("healthz", "GET")],
  ["/readyz", own("readyz", "GET")],
  ["/metrics", own("metrics", "GET")],
  ["/v1/models", own("models", "GET")],
  ["/admin/status", own("admin_status", "GET")],
  ["/admin/unload", own("admin_unload", "POST")],
  ["/v1/chat/completions", fwd()],
  ["/v1/completions", fwd()],
  ["/v1/embeddings", fwd()],
  ["/v1/responses", fwd()],
  ["/v1/messages", fwd("POST", true)],
  ["/v1/messages/count_tokens", fwd("POST", true)],
  ["/v1/audio/transcriptions", fwd()],
  ["/v1/audio/translations", fwd()],
  ["/v1/rerank", fwd()],
  ["/v1/score", fwd()],
  ["/v2/rerank", fwd()],
  ["/tokenize", fwd()],
  ["/detokenize", fwd()],
  ["/pooling", fwd()],
  ["/score", fwd()],
  ["/rerank", fwd()],
  ["/classify", fwd()],
]);

/** `/admin/models/{name}/<action>`: the action → the own route that does it. */
const MODEL_ACTIONS = new Map<string, RouteMatch & { kind: "own" }>([
  ["load", { kind: "own", route: "admin_load", method: "POST" }],
  ["sleep", { kind: "own", route: "admin_sleep", method: "POST" }],
  ["unload", { kind: "own", route: "admin_unload_model", method: "POST" }],
]);

const RESPONSES_PREFIX = "/v1/responses/";
const ADMIN_MODELS_PREFIX = "/admin/models/";
const ID_SEGMENT = /^[A-Za-z0-9_.:-]{1,256}$/;
/** A model in an admin path: a key or served name, or `*` (scale-only mode's one engine, as /admin/status names it). */
const MODEL_SEGMENT = /^(\*|[A-Za-z0-9_.:-]{1,256})$/;
/** Encoded `/`, `\`, `.` and `%` itself: refused so no decoding trick reaches another route. */
const ODD = /%(2f|5c|2e|25)|\\|\/\/|\/\.\.?(\/|$)/i;

/**
 * Classifies a request path. `pathname` is the URL's pathname (dot
 * segments already resolved by the URL parser).
 *
 * @example
 * ```ts
 * import { matchRoute } from "./routes.ts";
 * matchRoute("/v1/chat/completions").kind; // "forward"
 * matchRoute("/v1/files").kind; // "not_found"
 * ```
 */
export function matchRoute(pathname: string): RouteMatch {
  const exact = EXACT.get(pathname);
  if (exact) return exact;
  if (pathname.length > MAX_PATH_LENGTH) return { kind: "too_long" };
  if (ODD.test(pathname)) return { kind: "not_found" };
  if (pathname.startsWith(RESPONSES_PREFIX)) {
    const rest = pathname.slice(RESPONSES_PREFIX.length).split("/");
    if (rest.length === 1 && ID_SEGMENT.test(rest[0])) {
      return { kind: "forward", method: "GET", hasBody: false, xApiKey: false };
    }
    if (rest.length === 2 && ID_SEGMENT.test(rest[0]) && rest[1] === "cancel") {
      return { kind: "forward", method: "POST", hasBody: false, xApiKey: false };
    }
    return { kind: "not_found" };
  }
  if (pathname.startsWith(ADMIN_MODELS_PREFIX)) {
    const rest = pathname.slice(ADMIN_MODELS_PREFIX.length).split("/");
    const action = rest.length === 2 && MODEL_SEGMENT.test(rest[0]) ? MODEL_ACTIONS.get(rest[1]) : undefined;
    if (action) return { ...action, param: rest[0] };
  }
  return { kind: "not_found" };
}
