/**
 * The Backend interface: how the scaler's driver starts, stops and observes
 * an engine, whatever runs it (a Kubernetes Deployment or a local process).
 * One backend drives one engine slot (one GPU): at most one model at a time.
 *
 * @module
 */
import type { NamedModel } from "../config/schema.ts";

/** What the engine slot is doing, as observed in the world. */
export type EnginePhase =
  | "absent" // nothing running, nothing wanted (replicas 0, no pod)
  | "pending" // wanted but not scheduled yet (e.g. waiting for a GPU node)
  | "starting" // scheduled/spawned, not ready yet (loading the model)
  | "ready" // serving: /health answers 200
  | "terminating" // being stopped; still holds the GPU
  | "failed"; // crash-looping or exited with an error

/** The state read back from the world (after a restart, or on demand). */
export interface Observed {
  /** Desired replicas (Kubernetes) or 1/0 (process). */
  replicas: number;
  /** Key of the model the engine is configured with, or null (none / scale-only). */
  activeModel: string | null;
  /** Phase of the engine. */
  phase: EnginePhase;
  /** Why, when pending/failed/terminating (e.g. "Unschedulable: 0/1 nodes have free nvidia.com/gpu"). */
  reason?: string;
  /** Process id (process backend). */
  pid?: number;
}

/** Options shared by the backend's waits: each has a deadline and a signal. */
export interface WaitOptions {
  /** Aborts the wait (shutdown, superseded decision). */
  signal: AbortSignal;
  /** Absolute time (ms since epoch, Date.now() clock) after which the wait fails. */
  deadline: number;
}

/** A backend-level failure with a reason a person can act on. */
export class BackendError extends Error {
  /** "timeout" | "crashloop" | "exited" | "unavailable" | "forbidden" | "aborted" | "failed". */
  readonly kind: string;
  /** Creates the error. */
  constructor(kind: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BackendError";
    this.kind = kind;
  }
}

/**
 * An engine slot. The scaler's driver guarantees it calls `start` only when
 * the slot is absent, and never two operations at once.
 */
export interface Backend {
  /** "kubernetes" or "process". */
  readonly kind: "kubernetes" | "process";
  /** Reads the real state back (restart safety, level-triggered). */
  observe(signal: AbortSignal): Promise<Observed>;
  /**
   * Configures `model` (null in scale-only mode: replicas only) and brings
   * the engine up; resolves once it is ready to serve (vLLM's /health
   * answers 200). Rejects with a BackendError on deadline, abort, crash.
   */
  start(model: NamedModel | null, options: WaitOptions): Promise<void>;
  /** Waits for an engine that is already starting (found by `observe`) to be ready. */
  waitReady(model: NamedModel | null, options: WaitOptions): Promise<void>;
  /**
   * Stops the engine and resolves once it is really gone (GPU free).
   * `force` kills without a grace period (switchStrategy: force).
   */
  stop(options: WaitOptions & { force?: boolean; reason: string }): Promise<void>;
  /** Base URL (no trailing slash) to forward to while ready, e.g. "http://vllm-svc:80". */
  upstream(): string;
  /** Registers a listener for an engine that fails on its own while ready (pod gone, process exit). */
  onFailure(listener: (reason: string) => void): void;
  /** Extra status for /admin/status (replicas, pid, pod phase…). */
  describe(): Record<string, unknown>;
  /** Releases watches, timers and child processes. */
  close(): Promise<void>;
}
