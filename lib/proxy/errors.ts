/**
 * OpenAI-style error bodies (`{"error":{"message","type","param","code"}}`),
 * as HTTP responses and as SSE events, so every client SDK surfaces them as
 * API errors.
 *
 * @module
 */

/** OpenAI error types by HTTP status. */
function typeFor(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/**
 * The JSON object of an OpenAI error body.
 *
 * @example
 * ```ts
 * import type { OpenAiErrorBody } from "./errors.ts";
 * const body: OpenAiErrorBody = { error: { message: "m", type: "invalid_request_error", param: null, code: "c" } };
 * ```
 */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/**
 * Builds the OpenAI error object for `status`.
 *
 * @example
 * ```ts
 * import { errorBody } from "./errors.ts";
 * errorBody(404, "The model 'x' does not exist", "model_not_found").error.type; // "invalid_request_error"
 * ```
 */
export function errorBody(status: number, message: string, code: string, param: string | null = null): OpenAiErrorBody {
  return { error: { message, type: typeFor(status), param, code } };
}

/**
 * An error response with an OpenAI error body; `retryAfter` (seconds) adds a
 * `Retry-After` header.
 *
 * @example
 * ```ts
 * import { errorResponse } from "./errors.ts";
 * const res = errorResponse(429, "Too many held requests", "hold_queue_full", { retryAfter: 5 });
 * res.headers.get("retry-after"); // "5"
 * ```
 */
export function errorResponse(
  status: number,
  message: string,
  code: string,
  options: { retryAfter?: number; param?: string | null; headers?: HeadersInit } = {},
): Response {
  const headers = new Headers(options.headers);
  headers.set("content-type", "application/json");
  if (options.retryAfter !== undefined) headers.set("retry-after", String(Math.max(0, Math.ceil(options.retryAfter))));
  return new Response(JSON.stringify(errorBody(status, message, code, options.param ?? null)), { status, headers });
}

/**
 * The same error as one SSE event (`data: {"error":{...}}`), which the
 * OpenAI SDKs' streaming clients raise as an APIError. With `anthropic`
 * (streams of /v1/messages) it is a named `event: error` carrying
 * `{"type":"error","error":{...}}`, which both the Anthropic and the OpenAI
 * SDKs raise.
 *
 * @example
 * ```ts
 * import { errorEvent } from "./errors.ts";
 * errorEvent(503, "model failed to start", "model_unavailable").startsWith("data: {\"error\""); // true
 * ```
 */
export function errorEvent(status: number, message: string, code: string, anthropic = false): string {
  if (anthropic) {
    return `event: error\ndata: ${JSON.stringify({ type: "error", ...errorBody(status, message, code) })}\n\n`;
  }
  return `data: ${JSON.stringify(errorBody(status, message, code))}\n\n`;
}

/**
 * Shortens client-supplied text echoed in error messages (200 characters).
 *
 * @example
 * ```ts
 * import { clip } from "./errors.ts";
 * clip("x".repeat(300)).length; // 201
 * ```
 */
export function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/**
 * A refusal as the client sees it.
 *
 * @example
 * ```ts
 * import type { ClientRefusal } from "./errors.ts";
 * const refusal: ClientRefusal = { status: 504, code: "hold_timeout", message: "…", retryAfter: undefined };
 * ```
 */
export interface ClientRefusal {
  status: number;
  code: string;
  message: string;
  retryAfter?: number;
}

/** Refusal codes whose scaler message carries a backend's reason (an engine's output, a command line). */
const REASON_CODES = new Set(["model_unavailable", "unload_failed"]);
const WHERE = "the reason is in GET /admin/status (lastError) and in the proxy's log";

/**
 * What the client is told of a scaler refusal (or of an unexpected error
 * while holding): status, code and Retry-After as they are, but never a
 * backend's reason — an engine's last output lines, a missing command, a
 * pod's termination message stay in the log and `/admin/status`. The
 * message names the model and says where the reason is. A start that failed
 * because the cluster had no room says why in the kube scheduler's words
 * (the rejection's `detail`: DESIGN, the pool on Kubernetes).
 *
 * @example
 * ```ts
 * import { clientRefusal } from "./errors.ts";
 * const error = Object.assign(new Error('model "a" failed to start: command not found: /opt/vllm'), {
 *   status: 503, code: "model_unavailable", retryAfter: 30,
 * });
 * clientRefusal(error, "a").message;
 * // "The model 'a' failed to start; the reason is in GET /admin/status (lastError) and in the proxy's log"
 * ```
 */
export function clientRefusal(error: unknown, model: string | null): ClientRefusal {
  const r = error as Partial<ClientRefusal> & { message?: string };
  const known = typeof r?.status === "number" && typeof r?.code === "string";
  const name = model === null || model === "*" ? "The model" : `The model '${clip(model)}'`;
  if (!known) {
    return { status: 503, code: "model_unavailable", message: `${name} could not be served; ${WHERE}`, retryAfter: 5 };
  }
  if (!REASON_CODES.has(r.code!)) {
    return { status: r.status!, code: r.code!, message: r.message ?? "", retryAfter: r.retryAfter };
  }
  const text = r.message ?? "";
  const what = r.code === "unload_failed"
    ? "The unload failed"
    : /did not stop/.test(text)
    ? `${name} cannot start: the running engine did not stop`
    : /failed to start/.test(text)
    ? `${name} failed to start`
    : `${name} is unavailable`;
  // The scheduler's own reason when the cluster had no room (a pod the kube scheduler could not place).
  const detail = typeof (error as { detail?: unknown })?.detail === "string"
    ? `: no room in the cluster: ${clipDetail((error as { detail: string }).detail)}`
    : "";
  return { status: r.status!, code: r.code!, message: `${what}${detail}; ${WHERE}`, retryAfter: r.retryAfter };
}

/** A scheduler message as clients see it: one line, at most 500 characters. */
function clipDetail(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 500 ? `${line.slice(0, 500)}…` : line;
}
