/**
 * metav1.Status error bodies exactly as a real Kubernetes API server writes
 * them, and the error type the fake's handlers throw to produce one.
 *
 * @module
 */

/** Details of a Status (name, group, kind, causes). */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: { reason?: string; message?: string; field?: string }[];
  retryAfterSeconds?: number;
}

/** A metav1.Status failure body. */
export interface StatusBody {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

/**
 * An API error the router turns into a Status response.
 *
 * @example
 * ```ts
 * import { ApiError } from "./status.ts";
 * const err = new ApiError(404, "NotFound", 'configmaps "x" not found', { name: "x", kind: "configmaps" });
 * err.body().code; // 404
 * ```
 */
export class ApiError extends Error {
  /** HTTP status code. */
  readonly code: number;
  /** Status reason (NotFound, Conflict, …). */
  readonly reason: string;
  /** Status details. */
  readonly details?: StatusDetails;

  constructor(code: number, reason: string, message: string, details?: StatusDetails) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  /** The Status body. */
  body(): StatusBody {
    const body: StatusBody = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details) body.details = this.details;
    return body;
  }
}

/**
 * `<resource>[.<group>]`, the qualified resource name used in messages.
 *
 * @example
 * ```ts
 * import { qualified } from "./status.ts";
 * qualified("deployments", "apps"); // "deployments.apps"
 * qualified("pods", ""); // "pods"
 * ```
 */
export function qualified(resource: string, group: string): string {
  return group ? `${resource}.${group}` : resource;
}

/**
 * 404 NotFound for `name` of `resource` in `group`.
 *
 * @example
 * ```ts
 * import { notFound } from "./status.ts";
 * notFound("configmaps", "", "x").message; // 'configmaps "x" not found'
 * ```
 */
export function notFound(resource: string, group: string, name: string): ApiError {
  const details: StatusDetails = { name, kind: resource };
  if (group) details.group = group;
  return new ApiError(404, "NotFound", `${qualified(resource, group)} "${name}" not found`, details);
}

/**
 * 409 AlreadyExists.
 *
 * @example
 * ```ts
 * import { alreadyExists } from "./status.ts";
 * alreadyExists("configmaps", "", "x").reason; // "AlreadyExists"
 * ```
 */
export function alreadyExists(resource: string, group: string, name: string): ApiError {
  const details: StatusDetails = { name, kind: resource };
  if (group) details.group = group;
  return new ApiError(409, "AlreadyExists", `${qualified(resource, group)} "${name}" already exists`, details);
}

/**
 * 409 Conflict for a stale resourceVersion.
 *
 * @example
 * ```ts
 * import { conflict } from "./status.ts";
 * conflict("configmaps", "", "x").code; // 409
 * ```
 */
export function conflict(resource: string, group: string, name: string): ApiError {
  const details: StatusDetails = { name, kind: resource };
  if (group) details.group = group;
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(resource, group)} "${name}": the object has been modified; ` +
      "please apply your changes to the latest version and try again",
    details,
  );
}

/**
 * 400 BadRequest.
 *
 * @example
 * ```ts
 * import { badRequest } from "./status.ts";
 * badRequest("nope").code; // 400
 * ```
 */
export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

/**
 * 410 Expired for a watch/list from a resourceVersion no longer retained.
 *
 * @example
 * ```ts
 * import { expired } from "./status.ts";
 * expired("5").code; // 410
 * ```
 */
export function expired(rv: string): ApiError {
  return new ApiError(410, "Expired", `too old resource version: ${rv}`);
}

/**
 * Turns an ApiError into a JSON Response.
 *
 * @example
 * ```ts
 * import { badRequest, statusResponse } from "./status.ts";
 * statusResponse(badRequest("x")).status; // 400
 * ```
 */
export function statusResponse(err: ApiError, headers: HeadersInit = {}): Response {
  return Response.json(err.body(), { status: err.code, headers });
}
