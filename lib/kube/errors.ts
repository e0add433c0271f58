/**
 * Typed Kubernetes API errors. Every failure of a call made through
 * `lib/kube` is turned into one of these by {@link toKubeError}, keeping the
 * API server's own `Status.message` so logs say what the server said.
 *
 * @module
 */

/** Base class of every Kubernetes API failure. */
export class KubeError extends Error {
  /** HTTP status (0 when the request never got an answer). */
  readonly status: number;
  /** The Status `reason` the server gave ("NotFound", "Conflict", …), if any. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @example
   * ```ts
   * import { KubeError } from "./errors.ts";
   * new KubeError(418, "Teapot", "short and stout").status; // 418
   * ```
   */
  constructor(status: number, reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KubeError";
    this.status = status;
    this.reason = reason;
  }
}

/**
 * 404: the object (or the resource type, e.g. a missing CRD) does not exist.
 *
 * @example
 * ```ts
 * import { NotFoundError } from "./errors.ts";
 * new NotFoundError(404, "NotFound", 'configmaps "x" not found').name; // "NotFoundError"
 * ```
 */
export class NotFoundError extends KubeError {
  override readonly name = "NotFoundError";
}

/**
 * 409: a stale resourceVersion on update, or AlreadyExists on create.
 *
 * @example
 * ```ts
 * import { ConflictError } from "./errors.ts";
 * new ConflictError(409, "AlreadyExists", "exists").reason; // "AlreadyExists"
 * ```
 */
export class ConflictError extends KubeError {
  override readonly name = "ConflictError";
}

/**
 * 401/403: the service account may not make this call.
 *
 * @example
 * ```ts
 * import { ForbiddenError } from "./errors.ts";
 * new ForbiddenError(403, "Forbidden", "no").status; // 403
 * ```
 */
export class ForbiddenError extends KubeError {
  override readonly name = "ForbiddenError";
}

/**
 * 5xx, 429 or a network failure: worth retrying an idempotent call.
 *
 * @example
 * ```ts
 * import { UnavailableError } from "./errors.ts";
 * new UnavailableError(503, "ServiceUnavailable", "busy").status; // 503
 * ```
 */
export class UnavailableError extends KubeError {
  override readonly name = "UnavailableError";
}

/**
 * 400/415/422: the server refused the object or request as invalid.
 *
 * @example
 * ```ts
 * import { InvalidError } from "./errors.ts";
 * new InvalidError(422, "Invalid", "spec.replicas: Invalid value").status; // 422
 * ```
 */
export class InvalidError extends KubeError {
  override readonly name = "InvalidError";
}

/**
 * Maps anything thrown by client-node (an `ApiException` with the server's
 * Status body, a network error, a Watch `done` error with `statusCode`) to a
 * typed {@link KubeError}. Already-typed errors and aborts pass through.
 *
 * @example
 * ```ts
 * import { NotFoundError, toKubeError } from "./errors.ts";
 * const e = toKubeError({ code: 404, body: '{"kind":"Status","reason":"NotFound","message":"not here"}' });
 * e instanceof NotFoundError; // true
 * e.message; // "not here"
 * ```
 */
export function toKubeError(error: unknown, context?: string): KubeError {
  if (error instanceof KubeError) return error;
  const e = error as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; name?: unknown };
  const status = typeof e?.code === "number" ? e.code : typeof e?.statusCode === "number" ? e.statusCode : 0;
  const body = parseStatus(e?.body);
  const reason = body?.reason ?? (status ? `HTTP${status}` : "NetworkError");
  const serverMessage = body?.message ?? (status ? `HTTP ${status}` : String(e?.message ?? error));
  const message = context ? `${context}: ${serverMessage}` : serverMessage;
  const options = { cause: error };
  if (status === 404) return new NotFoundError(status, reason, message, options);
  if (status === 409) return new ConflictError(status, reason, message, options);
  if (status === 401 || status === 403) return new ForbiddenError(status, reason, message, options);
  if (status === 400 || status === 415 || status === 422) return new InvalidError(status, reason, message, options);
  if (status === 0 || status === 429 || status >= 500) return new UnavailableError(status, reason, message, options);
  return new KubeError(status, reason, message, options);
}

function parseStatus(body: unknown): { reason?: string; message?: string } | undefined {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return body ? { message: body.slice(0, 500) } : undefined;
    }
  }
  if (value && typeof value === "object") {
    const { reason, message } = value as { reason?: unknown; message?: unknown };
    return {
      reason: typeof reason === "string" && reason ? reason : undefined,
      message: typeof message === "string" && message ? message : undefined,
    };
  }
  return undefined;
}
