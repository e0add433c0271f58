/**
 * The Backend interface: how the scaler's driver starts, puts to sleep,
 * wakes, stops and observes engines, whatever runs them (Kubernetes
 * Deployments or local processes). An *engine* is one vLLM server for one
 * model, named by the model's key ("*" in scale-only mode). The driver never
 * runs two operations on the same engine at once; operations on different
 * engines run concurrently. Placement (which GPUs) is the scheduler's
 * decision, passed to `start`.
 *
 * @module
 */
import type { NamedModel } from "../config/schema.ts";

/** What an engine is doing, as observed in the world. */
export type EnginePhase =
  | "pending" // wanted but not scheduled yet (e.g. waiting for a GPU node)
  | "starting" // scheduled/spawned, not ready yet (loading the model)
  | "ready" // serving: /health answers 200 and /is_sleeping (when sleep mode is on) says false
  | "sleeping" // vLLM sleep mode: alive, GPU memory freed (/is_sleeping true)
  | "terminating" // being stopped; still holds the GPU
  | "failed"; // crash-looping or exited with an error

/** One engine read back from the world (after a restart, or on demand). */
export interface ObservedEngine {
  /** The model key it serves ("*" in scale-only mode); null when it serves no known model (stop it). */
  key: string | null;
  phase: EnginePhase;
  /** Device ids it runs on, when the backend knows (process: its CUDA_VISIBLE_DEVICES). */
  gpus?: string[];
  /** Sleep level, when asleep and known. */
  sleepLevel?: 1 | 2;
  /** Why, when pending/failed/terminating (e.g. "Unschedulable: 0/1 nodes have free nvidia.com/gpu"). */
  reason?: string;
}

/** The world read back: every engine that exists. */
export interface Observed {
  engines: ObservedEngine[];
}

/** Options shared by the backend's waits: each has a deadline and a signal. */
export interface WaitOptions {
  /** Aborts the wait (shutdown, superseded decision). */
  signal: AbortSignal;
  /** Absolute time (ms since epoch, Date.now() clock) after which the wait fails. */
  deadline: number;
}

/** Options of `start` and `waitReady`: a wait, and who to tell while the world has no room for the engine. */
export interface StartOptions extends WaitOptions {
  /**
   * Called (again at most every few seconds) while the engine cannot be placed by the world although it was
   * started (Kubernetes: its pod is unschedulable), with the reason (the kube scheduler's message); the start
   * goes on until its deadline.
   */
  onPending?: (reason: string) => void;
}

/** What `start` needs to bring an engine up. */
export interface EngineLaunch {
  /** The engine's name: the model key, or "*" in scale-only mode. */
  key: string;
  /** The model to configure; null in scale-only mode (replicas only / the default model). */
  model: NamedModel | null;
  /** Device ids the scheduler placed it on (process: CUDA_VISIBLE_DEVICES); [] for a CPU model. */
  gpus: string[];
  /**
   * Start with vLLM's sleep mode (`--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`): true when the model may
   * sleep (it has a `sleepAfter`).
   */
  sleepMode: boolean;
}

/** A backend-level failure with a reason a person can act on. */
export class BackendError extends Error {
  /** "timeout" | "crashloop" | "exited" | "unavailable" | "forbidden" | "aborted" | "failed" | "unschedulable". */
  readonly kind: string;
  /** Creates the error. */
  constructor(kind: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BackendError";
    this.kind = kind;
  }
}

/**
 * Engines, one per model key. The scaler's driver guarantees: `start` only for
 * a key with no engine; `sleep` only for a ready engine with nothing in
 * flight; `wake` only for a sleeping one; never two operations on the same key
 * at once (a newer one aborts the older through its signal first).
 */
export interface Backend {
  /** "kubernetes" or "process". */
  readonly kind: "kubernetes" | "process";
  /** Reads every engine back (restart safety, level-triggered), sleeping ones included. */
  observe(signal: AbortSignal): Promise<Observed>;
  /**
   * Configures and brings up the engine for `launch.key` on `launch.gpus`;
   * resolves once it is ready to serve (vLLM's /health answers 200). Rejects
   * with a BackendError on deadline, abort, crash. A failed start leaves
   * nothing running.
   */
  start(launch: EngineLaunch, options: StartOptions): Promise<void>;
  /** Waits for an engine that is already starting (found by `observe`) to be ready. */
  waitReady(launch: EngineLaunch, options: StartOptions): Promise<void>;
  /**
   * Puts a ready engine to sleep (`POST /sleep?level=N`) and resolves once
   * `GET /is_sleeping` says true (its GPU memory is free).
   */
  sleep(key: string, level: 1 | 2, options: WaitOptions): Promise<void>;
  /**
   * Wakes a sleeping engine (`POST /wake_up`; for level 2 also
   * `reload_weights` and `reset_prefix_cache`) and resolves once
   * `GET /is_sleeping` says false and it may serve again.
   */
  wake(key: string, level: 1 | 2, options: WaitOptions): Promise<void>;
  /**
   * Stops the engine (awake or asleep) and resolves once it is really gone
   * (GPU free). `force` kills without a grace period (switchStrategy: force).
   * Resolves at once when there is no such engine.
   */
  stop(key: string, options: WaitOptions & { force?: boolean; reason: string }): Promise<void>;
  /** Base URL (no trailing slash) to forward `key`'s requests to, e.g. "http://vllm-svc:80". */
  upstream(key: string): string;
  /** Registers a listener for an engine that fails on its own (pod gone, process exit) outside an operation. */
  onFailure(listener: (key: string, reason: string) => void): void;
  /** Extra status for /admin/status (per engine: pid, port, pod phase…). */
  describe(): Record<string, unknown>;
  /** Releases watches and timers; the process backend also stops its child engines. */
  close(): Promise<void>;
}
