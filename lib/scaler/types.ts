/**
 * What the proxy sees of the scaler: leases on a ready engine, rejections
 * with an HTTP status, and status snapshots. The scaler's decisions and its
 * driver live beside this file.
 *
 * @module
 */

/** Status of one model as shown by GET /v1/models. */
export type ModelStatus = "cold" | "starting" | "ready" | "draining" | "stopping" | "failed";

/** Lifecycle states (also the `vllm_chill_state{state}` label values). */
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
  /** HTTP status: 429 (queue full), 503 (start failed / shutting down), 504 (held too long). */
  readonly status: 429 | 503 | 504;
  /** OpenAI-style error code, e.g. "hold_queue_full", "model_unavailable", "hold_timeout". */
  readonly code: string;
  /** Seconds for the Retry-After header, when useful. */
  readonly retryAfter?: number;
  /** Creates the rejection. */
  constructor(status: 429 | 503 | 504, code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = "Rejection";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Snapshot for GET /admin/status. */
export interface ScalerStatus {
  state: LifecycleState;
  activeModel: string | null;
  /** Model being switched to, if any. */
  nextModel: string | null;
  held: Record<string, number>;
  inflight: Record<string, number>;
  lastActivity: string | null;
  lastError: { model: string | null; reason: string; at: string } | null;
  lastColdStartMs: number | null;
  lastSwitchMs: number | null;
  backend: Record<string, unknown>;
  /** Why the scaler is in `state` (e.g. "switch to b", "idle", "start failed: …"). */
  stateReason?: string;
}

/** The scaler as the proxy uses it. */
export interface Gate {
  /** Warm path: a lease right now when `model` is ready and nothing blocks it, else null. No I/O. */
  tryAcquire(model: string): Lease | null;
  /**
   * Holds until `model` is ready (waking or switching as needed) and returns
   * a lease; rejects with a {@link Rejection}, or with the signal's reason when
   * the client leaves (the request is then removed from the queue).
   */
  acquire(model: string, options: { signal: AbortSignal }): Promise<Lease>;
  /** Status of one model for /v1/models. */
  modelStatus(model: string): ModelStatus;
  /** Full snapshot for /admin/status. */
  status(): ScalerStatus;
  /** Loads `model` now (admin preload/switch); resolves when ready. */
  load(model: string, options: { signal: AbortSignal }): Promise<void>;
  /** Drains then stops the engine (admin unload); resolves when stopped. */
  unload(options: { signal: AbortSignal }): Promise<void>;
}
