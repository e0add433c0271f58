/**
 * The scaler's vocabulary: its policy (timeouts and limits), its state, the
 * events it reacts to and the effects it answers with. `decide` (decide.ts)
 * is a pure function over these types; the driver (driver.ts) turns the world
 * into events and effects into actions.
 *
 * @module
 */
import type { ChillConfig, ModelSpec } from "../config/schema.ts";
import type { LifecycleState } from "./types.ts";

/** Per-model overrides of the global timeouts (ms). */
export interface ModelTimeouts {
  idleTimeout?: number;
  holdTimeout?: number;
  startTimeout?: number;
}

/** Everything `decide` needs to know about the config, in milliseconds. */
export interface Policy {
  idleTimeout: number;
  holdTimeout: number;
  startTimeout: number;
  drainTimeout: number;
  minLoadedTime: number;
  /**
   * How long the active model must have been quiet (nothing in flight, nothing
   * held) before another model may take its place inside `minLoadedTime`.
   * Without it two sequential clients alternating between two models would
   * switch on every request. Internal: min(minLoadedTime, 2s).
   */
  switchQuiet: number;
  /** Deadline of one backend stop (waiting for the old pod/process to be gone). */
  stopTimeout: number;
  maxHeldRequests: number;
  /** Retry-After (s) on 429 hold_queue_full. */
  queueFullRetryAfter: number;
  /** Retry-After (s) on 503 model_unavailable / shutting_down. */
  unavailableRetryAfter: number;
  /** switchStrategy === "force": kill the old engine without a grace period on switches. */
  forceSwitch: boolean;
  /** Overrides by model key. */
  models: Record<string, ModelTimeouts>;
}

/**
 * Default deadline of one stop: long enough for vLLM's graceful exit and a slow kubelet.
 *
 * @example
 * ```ts
 * import { DEFAULT_STOP_TIMEOUT } from "./state.ts";
 * DEFAULT_STOP_TIMEOUT; // 300000
 * ```
 */
export const DEFAULT_STOP_TIMEOUT = 5 * 60_000;

/** The config keys the scheduling policy reads. */
export type PolicyConfig = Pick<
  ChillConfig,
  | "idleTimeout"
  | "holdTimeout"
  | "startTimeout"
  | "drainTimeout"
  | "minLoadedTime"
  | "maxHeldRequests"
  | "switchStrategy"
>;

/**
 * Builds the policy from a validated config and the known models (config
 * models and VLLMModel objects).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { policyFromConfig } from "./state.ts";
 * const config = parseConfig({ idleTimeout: "1m", models: { a: { modelName: "org/a", idleTimeout: "5s" } } });
 * const policy = policyFromConfig(config, config.models);
 * policy.idleTimeout; // 60000
 * policy.models.a.idleTimeout; // 5000
 * ```
 */
export function policyFromConfig(
  config: PolicyConfig,
  models: Readonly<Record<string, Pick<ModelSpec, "idleTimeout" | "holdTimeout" | "startTimeout">>> = {},
): Policy {
  const overrides: Record<string, ModelTimeouts> = {};
  for (const [key, spec] of Object.entries(models)) {
    const o: ModelTimeouts = {};
    if (spec.idleTimeout !== undefined) o.idleTimeout = spec.idleTimeout;
    if (spec.holdTimeout !== undefined) o.holdTimeout = spec.holdTimeout;
    if (spec.startTimeout !== undefined) o.startTimeout = spec.startTimeout;
    if (Object.keys(o).length) overrides[key] = o;
  }
  return {
    idleTimeout: config.idleTimeout,
    holdTimeout: config.holdTimeout,
    startTimeout: config.startTimeout,
    drainTimeout: config.drainTimeout,
    minLoadedTime: config.minLoadedTime,
    switchQuiet: Math.min(config.minLoadedTime, 2_000),
    stopTimeout: DEFAULT_STOP_TIMEOUT,
    maxHeldRequests: config.maxHeldRequests,
    queueFullRetryAfter: 5,
    unavailableRetryAfter: 30,
    forceSwitch: config.switchStrategy === "force",
    models: overrides,
  };
}

/** A request (or an admin load) waiting for its model. */
export interface HeldRequest {
  id: string;
  model: string;
  arrivedAt: number;
  /** arrivedAt + holdTimeout; Infinity for admin loads (bounded by the start instead). */
  deadline: number;
  /** An admin `load`: forces a switch, is never counted in flight. */
  admin?: boolean;
}

/** The last failure of a model (status "failed" until its next successful start). */
export interface ModelError {
  reason: string;
  at: number;
}

/** The whole state of the scheduler. Treat as immutable: `decide` returns a new one. */
export interface SchedulerState {
  policy: Policy;
  /** False until the world was read back (`observed`); requests are held meanwhile. */
  observed: boolean;
  lifecycle: LifecycleState;
  /** Since when in `lifecycle` (for transition durations). */
  since: number;
  /** Why the lifecycle is what it is (the reason of the last transition). */
  reason: string;
  /** Model the engine is configured with (starting, ready, draining, or being stopped); null when idle. */
  active: string | null;
  /** Model a drain/stop is making room for; null for idle stops and unloads. */
  next: string | null;
  /** Why the current drain/stop happens ("idle", "unload", "switch to b", …). */
  stopReason: string | null;
  /** Whether the current stop kills without a grace period (switchStrategy force). */
  stopForce: boolean;
  /** Id of the backend operation in progress (start, waitReady, stop, observe); results of older ones are stale. */
  op: number;
  /** Stop attempts for the current stop (one retry, then read the world back). */
  stopAttempts: number;
  /** Granted requests: id → model. */
  inflight: ReadonlyMap<string, string>;
  /** Granted requests per model (kept with `inflight`, for O(1) counts). */
  inflightByModel: Readonly<Record<string, number>>;
  /** Waiting requests, oldest first. */
  held: HeldRequest[];
  /** Pending admin unloads, resolved by the next `stopped`. */
  unloads: string[];
  readySince: number | null;
  /** End of the last in-flight request, or when the engine became ready. */
  lastActivity: number | null;
  startedAt: number | null;
  startDeadline: number | null;
  drainDeadline: number | null;
  /** Model the current switch comes from and when it was decided (switch metrics). */
  switchFrom: string | null;
  switchAt: number | null;
  errors: Record<string, ModelError>;
  lastError: { model: string | null; reason: string; at: number } | null;
  lastColdStartMs: number | null;
  lastSwitchMs: number | null;
  /** Time the driver's single timer is set for, or null. */
  timerAt: number | null;
  shuttingDown: boolean;
}

/**
 * The state before anything is known: idle, not yet observed.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config/define.ts";
 * import { initialState, policyFromConfig } from "./state.ts";
 * const state = initialState(policyFromConfig(parseConfig({})), 0);
 * state.lifecycle; // "idle"
 * ```
 */
export function initialState(policy: Policy, now: number): SchedulerState {
  return {
    policy,
    observed: false,
    lifecycle: "idle",
    since: now,
    reason: "not observed yet",
    active: null,
    next: null,
    stopReason: null,
    stopForce: false,
    op: 0,
    stopAttempts: 0,
    inflight: new Map(),
    inflightByModel: {},
    held: [],
    unloads: [],
    readySince: null,
    lastActivity: null,
    startedAt: null,
    startDeadline: null,
    drainDeadline: null,
    switchFrom: null,
    switchAt: null,
    errors: {},
    lastError: null,
    lastColdStartMs: null,
    lastSwitchMs: null,
    timerAt: null,
    shuttingDown: false,
  };
}

/** What the world looked like when read back, with the model already mapped to a key ("*" in scale-only mode). */
export interface ObservedEngine {
  phase: "absent" | "pending" | "starting" | "ready" | "terminating" | "failed";
  model: string | null;
  reason?: string;
}

/** Everything the scheduler reacts to. */
export type SchedulerEvent =
  | { type: "request"; id: string; model: string }
  | { type: "release"; id: string }
  | { type: "cancel"; id: string }
  | { type: "started"; op: number }
  | { type: "startFailed"; op: number; reason: string }
  | { type: "stopped"; op: number }
  | { type: "stopFailed"; op: number; reason: string }
  | { type: "engineFailed"; reason: string }
  | { type: "tick" }
  | { type: "observed"; op: number; engine: ObservedEngine }
  | { type: "load"; id: string; model: string }
  | { type: "unload"; id: string }
  | { type: "configure"; policy: Policy }
  | { type: "shutdown" };

/** Everything the scheduler can do to the world. */
export type SchedulerEffect =
  /** Configure `model` and bring the engine up by `deadline`; answer with started/startFailed carrying `op`. */
  | { type: "start"; op: number; model: string; deadline: number }
  /** Wait for an engine found starting after a restart; answer like `start`. */
  | { type: "waitReady"; op: number; model: string; deadline: number }
  /** Stop the engine (aborting any start in progress); answer with stopped/stopFailed. */
  | { type: "stop"; op: number; reason: string; force: boolean; deadline: number }
  /** Read the world back; answer with `observed`. */
  | { type: "observe"; op: number }
  /** Hand these requests to the engine (they are now in flight, except admin loads which are done). */
  | { type: "grant"; ids: string[]; model: string }
  /** Refuse these requests / admin operations. */
  | {
    type: "reject";
    ids: string[];
    status: 429 | 503 | 504;
    code: string;
    message: string;
    retryAfter?: number;
  }
  /** Admin operations (unload) finished. */
  | { type: "done"; ids: string[] }
  /** Set the single timer for `at` (null: no timer); the driver then sends `tick`. */
  | { type: "schedule"; at: number | null }
  /** The lifecycle changed. */
  | {
    type: "transition";
    from: LifecycleState;
    to: LifecycleState;
    reason: string;
    model: string | null;
    durationMs: number;
  }
  /** A finished cold start or switch, for the histograms. */
  | { type: "metric"; name: "coldStart"; model: string; ms: number }
  | { type: "metric"; name: "switch"; from: string | null; to: string; ms: number };
