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
