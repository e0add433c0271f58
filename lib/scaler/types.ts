/**
 * What the proxy sees of the scaler: leases on a ready engine, rejections
 * with an HTTP status, and status snapshots. The scaler's decisions and its
 * driver live beside this file.
 *
 * @module
 */

/** Status of one model as shown by GET /v1/models and /admin/status. */
export type ModelStatus =
  | "cold"
  | "starting"
  | "ready"
  | "sleeping"
  | "waking"
  | "draining"
  | "stopping"
  | "failed";

/** The seed's single lifecycle (the `vllm_chill_state{state}` label values), derived from the engines. */
export type LifecycleState = "idle" | "starting" | "ready" | "draining" | "switching" | "stopping";

/** Permission to send one request to the engine; release it exactly once when the response ends. */
export interface Lease {
  /** Model key the engine serves. */
  readonly model: string;
  /** Base URL to forward to (no trailing slash). */
  readonly upstream: string;
  /** Milliseconds the request waited before being granted (0 on the warm path). */
  readonly heldMs: number;
  /** Ends the request's in-flight accounting; idempotent. */
  release(): void;
}

/** Why a request could not be granted, with the HTTP status the proxy returns. */
export class Rejection extends Error {
  /** HTTP status: 409 (admin operation not possible now), 429 (queue full), 503 (start failed / shutting down), 504 (held too long). */
  readonly status: 409 | 429 | 503 | 504;
  /** OpenAI-style error code, e.g. "hold_queue_full", "model_unavailable", "hold_timeout". */
  readonly code: string;
  /** Seconds for the Retry-After header, when useful. */
  readonly retryAfter?: number;
  /**
   * The part of the reason a client may be told, when there is one: the kube scheduler's message for a pod it
   * could not place. The rest of `message` (an engine's output, a pod's state) stays in the log and /admin/status.
   */
  readonly detail?: string;
  /** Creates the rejection. */
  constructor(
    status: 409 | 429 | 503 | 504,
    code: string,
    message: string,
    retryAfter?: number,
    detail?: string,
  ) {
    super(message);
    this.name = "Rejection";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    if (detail !== undefined) this.detail = detail;
  }
}

/** One model in /admin/status `models`. */
export interface ModelView {
  status: ModelStatus;
  /** Device ids its engine is placed on ([] when cold). */
  gpus: string[];
  /** Fraction of each of those GPUs it takes while awake (0–1). */
  share: number;
  inflight: number;
  held: number;
  /** End of its last request (or when it became ready), ISO; null when never used. */
  lastUsed: string | null;
  lastColdStartMs: number | null;
  lastWakeMs: number | null;
  /** Its last error, until its next successful start. */
  error: string | null;
}

/** One GPU in /admin/status `gpus`. */
export interface GpuView {
  /** Sum of the shares of the awake engines on it (0–1). */
  awakeShare: number;
  /** Models with an engine on it, awake or asleep. */
  models: string[];
}

/** A finished operation, for /admin/status `recent` and the dashboard. */
export interface RecentOperation {
  kind: "coldStart" | "wake" | "sleep" | "switch" | "stop";
  model: string;
  /** Duration (cold start, wake, switch); null for sleeps and stops. */
  ms: number | null;
  at: string;
}

/** Snapshot for GET /admin/status. */
export interface ScalerStatus {
  state: LifecycleState;
  activeModel: string | null;
  /** A model room is being made for, if any. */
  nextModel: string | null;
  held: Record<string, number>;
  inflight: Record<string, number>;
  lastActivity: string | null;
  lastError: { model: string | null; reason: string; at: string } | null;
  lastColdStartMs: number | null;
  lastSwitchMs: number | null;
  lastWakeMs: number | null;
  backend: Record<string, unknown>;
  /** Why the last state change happened. */
  stateReason?: string;
  models: Record<string, ModelView>;
  gpus: Record<string, GpuView>;
  recent: RecentOperation[];
}

/** The scaler as the proxy uses it. */
export interface Gate {
  /** Warm path: a lease right now when `model` is ready and nothing blocks it, else null. No I/O. */
  tryAcquire(model: string): Lease | null;
  /**
   * Holds until `model` is ready (starting, waking or making room as needed)
   * and returns a lease; rejects with a {@link Rejection}, or with the
   * signal's reason when the client leaves (the request is then removed from
   * the queue).
   */
  acquire(model: string, options: { signal: AbortSignal }): Promise<Lease>;
  /** Status of one model for /v1/models. */
  modelStatus(model: string): ModelStatus;
  /** Full snapshot for /admin/status. */
  status(): ScalerStatus;
  /** Wakes or starts `model` now (admin); resolves when ready. */
  load(model: string, options: { signal: AbortSignal }): Promise<void>;
  /** Drains then puts `model` to sleep (admin); resolves when asleep. */
  sleep(model: string, options: { signal: AbortSignal }): Promise<void>;
  /** Drains then stops `model`'s engine, or every engine when `model` is null (admin); resolves when stopped. */
  unload(model: string | null, options: { signal: AbortSignal }): Promise<void>;
}
